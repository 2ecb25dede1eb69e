"""The dashboard as a person uses it, in headless chromium at desktop and phone widths, against
a server filled by pulls through it: what each page says, and a screenshot of each."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.e2e.conftest import (
    ADMIN,
    HUB,
    OTHER_PASSWORD,
    PASSWORD,
    PREFIX,
    SECOND_ADMIN,
    VIEWER,
    Site,
    log_in,
    new_page,
    screenshot,
)

pytestmark = pytest.mark.e2e

WIDTH_NAMES = ("desktop", "phone")


def row_of(page: Page, table: str, column: str, value: str) -> Locator:
    """The row of table `#table` whose `column` cell reads exactly `value`."""
    cell = page.locator(f"td[data-label='{column}']", has_text=re.compile(f"^{re.escape(value)}$"))
    return page.locator(f"#{table} tbody tr").filter(has=cell)


@pytest.mark.parametrize("width", WIDTH_NAMES)
def test_the_login_form_refuses_a_wrong_password_and_accepts_the_right_one(
    site: Site, browser: Browser, width: str
) -> None:
    page = new_page(browser, width)
    page.goto(site.url + "/ui/repositories")
    expect(page).to_have_url(f"{site.url}/ui/login?next=/ui/repositories")
    screenshot(page, "login", width)

    log_in(page, site, password="not the password")
    expect(page.get_by_role("alert")).to_have_text("wrong user name or password")
    screenshot(page, "login-refused", width)
    assert not [c for c in page.context.cookies() if c["name"] == "pullthrough_session"]

    log_in(page, site)
    expect(page.locator("h1")).to_have_text("Overview")
    session = next(c for c in page.context.cookies() if c["name"] == "pullthrough_session")
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    # A page without the cookie is refused: the session is the cookie, nothing else.
    assert httpx.get(site.url + "/ui/", follow_redirects=False).status_code == 302

    page.get_by_role("button", name="Log out").click()
    expect(page.locator("h1")).to_have_text("Log in")
    page.goto(site.url + "/ui/space")
    expect(page.locator("h1")).to_have_text("Log in")
    page.context.close()


def test_the_login_form_needs_its_csrf_token_and_marks_the_cookie_secure_behind_tls(
    site: Site,
) -> None:
    with httpx.Client(base_url=site.url, timeout=60) as client:
        client.get("/ui/login")
        form = {"username": ADMIN, "password": PASSWORD}
        forged = client.post("/ui/login", data={**form, "csrf": "0" * 32})
        assert forged.status_code == 401
        assert "the form expired" in forged.text
        assert "pullthrough_session" not in forged.headers.get("Set-Cookie", "")

        form["csrf"] = client.cookies["pullthrough_csrf"]
        behind_tls = client.post("/ui/login", data=form, headers={"X-Forwarded-Proto": "https"})
        assert behind_tls.status_code == 303
        cookie = behind_tls.headers["Set-Cookie"]
        assert cookie.startswith("pullthrough_session=")
        for attribute in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/ui"):
            assert attribute in cookie


def test_a_deleted_user_loses_the_session_and_a_non_admin_is_refused(
    site: Site, browser: Browser
) -> None:
    page = new_page(browser, "desktop")
    log_in(page, site, OTHER_PASSWORD, username=SECOND_ADMIN)
    expect(page.locator("h1")).to_have_text("Overview")
    assert site.server.command("users", "delete", SECOND_ADMIN).strip() == "bob deleted"
    page.goto(site.url + "/ui/repositories")
    expect(page.locator("h1")).to_have_text("Log in")
    assert not [c for c in page.context.cookies() if c["name"] == "pullthrough_session"]

    log_in(page, site, OTHER_PASSWORD, username=VIEWER)
    expect(page.get_by_role("alert")).to_contain_text("the dashboard needs registry:Admin")
    expect(page.get_by_role("alert")).to_contain_text("carol")
    page.context.close()


@pytest.mark.parametrize("width", WIDTH_NAMES)
def test_the_overview_shows_the_hit_ratio_and_what_was_saved(
    site: Site, browser: Browser, width: str
) -> None:
    page = new_page(browser, width)
    log_in(page, site)
    # Reached from another page by its link (htmx swaps the body): the charts still draw.
    page.goto(site.url + "/ui/upstreams")
    page.get_by_role("link", name="Overview").click()
    expected = f"{100 * site.hits / (site.hits + site.misses):.1f}%"
    expect(page.locator("#hit-ratio")).to_have_text(expected)
    expect(page.locator("#pulls-saved")).to_have_text(str(site.hits))
    row = row_of(page, "rules-table", "Rule", PREFIX)
    expect(row.locator("td").nth(2)).to_have_text(str(site.hits))
    expect(row.locator("td").nth(3)).to_have_text(str(site.misses - site.hub_misses))
    hub = row_of(page, "rules-table", "Rule", HUB)
    expect(hub.locator("td").nth(3)).to_have_text(str(site.hub_misses))
    # Both charts drawn over the history (uPlot's canvas).
    expect(page.locator("#chart-requests canvas").first).to_be_visible()
    expect(page.locator("#chart-bytes canvas").first).to_be_visible()
    screenshot(page, "overview", width)
    page.context.close()


@pytest.mark.parametrize("width", WIDTH_NAMES)
def test_repositories_show_their_size_and_search_sort_and_pages_work(
    site: Site, browser: Browser, width: str
) -> None:
    page = new_page(browser, width)
    log_in(page, site)
    page.goto(site.url + "/ui/repositories")
    app = site.repository(site.single)
    row = row_of(page, "repositories", "Repository", app)
    expect(row.locator("td[data-label=Size]")).to_have_attribute(
        "title", f"{site.sizes[app]} bytes"
    )
    expect(row.locator("td[data-label=Images]")).to_have_text("2")
    expect(row.locator("td[data-label=Pulls]")).to_have_text("3")  # v1 twice, old once
    screenshot(page, "repositories", width)

    # Search: typing narrows the table (htmx), and the address keeps the query.
    page.fill("input[name=q]", "extra")
    expect(page.locator("#repositories tbody tr")).to_have_count(3)
    expect(page).to_have_url(f"{site.url}/ui/repositories?sort=name&order=asc&q=extra")

    # Sort by size, largest first, two per page: the pages follow the sizes.
    page.goto(site.url + "/ui/repositories?per_page=2")
    page.get_by_role("link", name="Size").click()
    page.get_by_role("link", name="Size ▲").click()
    by_size = sorted(site.sizes, key=lambda name: -site.sizes[name])
    names = page.locator("#repositories tbody td[data-label=Repository]")
    expect(names).to_have_text(by_size[:2])
    expect(page.locator("#showing")).to_have_text(f"1 to 2 of {len(site.sizes)}")
    page.get_by_role("link", name="Next").click()
    expect(names).to_have_text(by_size[2:4])
    screenshot(page, "repositories-sorted", width)
    page.context.close()


def test_the_csv_export_lists_every_repository_with_its_size(site: Site, browser: Browser) -> None:
    page = new_page(browser, "desktop")
    log_in(page, site)
    page.goto(site.url + "/ui/repositories?per_page=2&q=team")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="CSV").click()
    download = download_info.value
    assert download.suggested_filename == "repositories.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert {row["name"]: int(row["size_bytes"]) for row in rows} == site.sizes
    assert {row["name"]: row["rule"] for row in rows} == {
        name: name.partition("/")[0] for name in site.sizes
    }
    page.context.close()


@pytest.mark.parametrize("width", WIDTH_NAMES)
def test_an_index_page_shows_both_platforms_and_their_layers(
    site: Site, browser: Browser, width: str
) -> None:
    page = new_page(browser, width)
    log_in(page, site)
    multi = site.repository(site.multi)
    page.goto(f"{site.url}/ui/repository?name={multi}")
    row = page.locator("#images tbody tr").first
    expect(row.locator("td[data-label=Platforms]")).to_have_text("linux/amd64, linux/arm64")
    screenshot(page, "repository", width)
    row.locator("a").click()
    expect(page.locator("#platforms")).to_have_text("linux/amd64, linux/arm64")
    for architecture in ("amd64", "arm64"):
        child = site.multi.child(architecture)
        layers = page.locator(f"section[data-platform='linux/{architecture}'] table tbody tr")
        expect(layers).to_have_count(len(child.blobs) - 1)  # all but the config
        digests = layers.locator("td[data-label=Layer]")
        expect(digests).to_have_text([f"sha256:{b.digest[7:19]}" for b in child.blobs[1:]])
    screenshot(page, "image", width)
    page.context.close()


@pytest.mark.parametrize("width", WIDTH_NAMES)
def test_an_index_shows_its_platforms_findings_together_filtered_by_severity(
    site: Site, browser: Browser, width: str
) -> None:
    page = new_page(browser, width)
    log_in(page, site)
    multi = site.repository(site.multi)
    page.goto(f"{site.url}/ui/image?repository={multi}&digest={site.multi.digest}")
    expect(page.locator("#scan-status")).to_have_text("complete")
    rows = page.locator("#findings-table tbody tr")
    expect(rows.locator("td[data-label=Advisory] a")).to_have_text(
        ["DSA-0001-1", "GHSA-aaaa-bbbb-cccc", "CVE-2026-0002"]  # most severe first
    )
    shared = rows.filter(has_text="DSA-0001-1")
    expect(shared.locator("td[data-label=Platforms]")).to_have_text("linux/amd64, linux/arm64")
    expect(rows.filter(has_text="GHSA").locator("td[data-label=Platforms]")).to_have_text(
        "linux/arm64"
    )
    screenshot(page, "image-findings", width)

    page.select_option("select[name=severity]", "HIGH")
    expect(page.locator("#findings-shown")).to_have_text("2 of 3 findings")
    expect(rows.locator("td[data-label=Advisory] a")).to_have_text(
        ["DSA-0001-1", "GHSA-aaaa-bbbb-cccc"]
    )
    with page.expect_download() as download_info:
        page.locator("#findings a[download]").click()
    exported = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text())))
    assert [(row["advisory"], row["severity"], row["platforms"]) for row in exported] == [
        ("DSA-0001-1", "CRITICAL", "linux/amd64 linux/arm64"),
        ("GHSA-aaaa-bbbb-cccc", "HIGH", "linux/arm64"),
    ]
    page.context.close()


@pytest.mark.parametrize("width", WIDTH_NAMES)
def test_upstreams_rules_and_space_pages(site: Site, browser: Browser, width: str) -> None:
    page = new_page(browser, width)
    log_in(page, site)
    page.goto(site.url + "/ui/upstreams")
    upstream = row_of(page, "upstreams", "Rule", PREFIX)
    expect(upstream.locator("td[data-label=Health]")).to_have_text("reachable")
    expect(upstream.locator("td[data-label='Rate limit headroom']")).to_have_text("not reported")
    # Docker Hub's headers, as the hub rule's upstream sent them with the manifest.
    headroom = row_of(page, "upstreams", "Rule", HUB).locator(
        "td[data-label='Rate limit headroom']"
    )
    expect(headroom).to_contain_text("7 of 100 per 21600 s")
    expect(headroom.locator("meter")).to_have_attribute("value", "0.07")
    screenshot(page, "upstreams", width)

    page.goto(site.url + "/ui/rules")
    rule = row_of(page, "rules", "Prefix", PREFIX)
    expect(rule.locator("td[data-label='Eager fill']")).to_have_text("off")
    expect(page.locator("#policy")).to_contain_text("AliceAdministers")
    expect(page.locator("section.template")).to_contain_text("imageCountMoreThan")
    screenshot(page, "rules", width)

    page.goto(site.url + "/ui/space")
    largest = max(site.sizes, key=lambda name: site.sizes[name])
    expect(page.locator("#top-repositories tbody tr").first).to_contain_text(largest)
    expect(page.locator("#expiring")).to_have_text("1 image")
    expiry = page.locator("#expiries tbody tr")
    expect(expiry).to_have_count(1)
    expect(expiry.locator("td[data-label=Repository]")).to_have_text(f"{PREFIX}/team/app")
    expect(expiry.locator("td[data-label=Tags]")).to_have_text("old")
    expect(expiry.locator("td[data-label=Why]")).to_contain_text("rule 1")
    screenshot(page, "space", width)
    page.context.close()
