"""`WWW-Authenticate` parsing copes with what registries actually send."""

from __future__ import annotations

from pullthrough.upstream.challenge import Challenge, parse_challenges


def test_docker_hub_bearer_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull"'
    )

    assert parse_challenges([header]) == [
        Challenge(
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/nginx:pull",
            },
        )
    ]


def test_quoted_commas_escapes_and_several_challenges_in_one_header() -> None:
    header = (
        'Basic realm="a, b", BEARER Realm = "https://t.example/token" , '
        'scope="repository:x:pull,push", error=insufficient_scope, Other title="say \\"hi\\""'
    )

    basic, bearer, other = parse_challenges([header])

    assert basic == Challenge("basic", {"realm": "a, b"})
    assert bearer.scheme == "bearer"
    assert bearer.param("REALM") == "https://t.example/token"
    assert bearer.param("scope") == "repository:x:pull,push"
    assert bearer.param("error") == "insufficient_scope"
    assert other.param("title") == 'say "hi"'


def test_several_headers_token68_and_bare_schemes() -> None:
    challenges = parse_challenges(["Negotiate abc+/==, Basic", 'Bearer realm="r"'])

    assert [c.scheme for c in challenges] == ["negotiate", "basic", "bearer"]
    assert challenges[0].token68 == "abc+/=="
    assert challenges[2].param("realm") == "r"


def test_garbage_yields_what_was_understood_and_never_raises() -> None:
    assert parse_challenges(["", " , ", '"unterminated']) == []
    assert [c.scheme for c in parse_challenges(['Basic realm="x", ="y"'])] == ["basic"]
