"""The SQL schema. Timestamps are UNIX seconds (float) so expiry is plain arithmetic in SQL."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # The local name, `<rule prefix>/<upstream repository>`, e.g. docker-hub/library/nginx.
    Column("name", String(255), nullable=False),
    Column("rule_prefix", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("name", name="uq_repositories_name"),
)

manifests = Table(
    "manifests",
    metadata,
    Column("digest", String(150), primary_key=True),
    Column("media_type", String(255), nullable=False),
    Column("size", Integer, nullable=False),
    # Byte-exact as upstream sent it: clients verify the digest over these bytes.
    Column("content", LargeBinary, nullable=False),
    Column("subject", String(150), nullable=True),
    Column("artifact_type", String(255), nullable=True),
    Column("created_at", Float, nullable=False),
    Index("ix_manifests_subject", "subject"),
)

repository_manifests = Table(
    "repository_manifests",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id"), primary_key=True),
    Column("digest", String(150), ForeignKey("manifests.digest"), primary_key=True),
    Column("created_at", Float, nullable=False),
)

# What each manifest points at: blobs (config, layers) and, for an index, child manifests.
manifest_references = Table(
    "manifest_references",
    metadata,
    Column("manifest_digest", String(150), ForeignKey("manifests.digest"), primary_key=True),
    Column("target_digest", String(150), primary_key=True),
    Column("kind", String(16), nullable=False),  # "blob" or "manifest"
    Index("ix_manifest_references_target", "target_digest"),
)

tags = Table(
    "tags",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("digest", String(150), ForeignKey("manifests.digest"), nullable=False),
    # When upstream last confirmed this tag points at `digest`.
    Column("checked_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("digest", String(150), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
)

# A repository may serve a blob only when its own manifests reference it or it was fetched
# through it: blobs are shared on disk, not across names.
repository_blobs = Table(
    "repository_blobs",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id"), primary_key=True),
    Column("digest", String(150), primary_key=True),
)

# What each rule's upstream last said that all worker processes must know: until when a 429
# asked not to be sent requests, and its last reported rate limit (Docker Hub's headers).
upstream_state = Table(
    "upstream_state",
    metadata,
    Column("prefix", String(255), primary_key=True),
    Column("blocked_until", Float, nullable=True),
    Column("ratelimit_limit", Integer, nullable=True),
    Column("ratelimit_remaining", Integer, nullable=True),
    Column("ratelimit_window", Integer, nullable=True),  # seconds
    Column("ratelimit_source", String(255), nullable=True),  # the IP or account counted
    Column("ratelimit_seen_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
)

# How each upstream (by origin, `https://host[:port]`) last asked to be authenticated: `basic`,
# or `bearer` with its token realm and service. A worker that has not talked to the upstream yet
# sends credentials up front instead of collecting a 401 first. Tokens themselves are not kept.
upstream_challenges = Table(
    "upstream_challenges",
    metadata,
    Column("origin", String(512), primary_key=True),
    Column("scheme", String(16), nullable=False),
    Column("realm", String(2048), nullable=True),
    Column("service", String(512), nullable=True),
    Column("updated_at", Float, nullable=False),
)

# Who may use the cache: users (bcrypt-hashed passwords) and API keys (sha256 of a random key).
principals = Table(
    "principals",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("kind", String(16), nullable=False),  # "user" or "apikey"
    Column("secret_hash", String(255), nullable=False),
    Column("org", String(128), nullable=True),
    Column("groups", String(2048), nullable=False),  # JSON list
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# AWS access keys of principals, for the ECR-compatible API (api/ecr): the secret key must be
# recovered to check a request's HMAC signature, so it is sealed with the secret store's key
# (access/sealing.py, the access key id as associated data), never hashed.
aws_access_keys = Table(
    "aws_access_keys",
    metadata,
    Column("access_key_id", String(32), primary_key=True),
    Column("principal", String(128), nullable=False),
    Column("nonce", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_aws_access_keys_principal", "principal"),
)

# Signatures of the signed requests accepted lately: one seen again before `expires_at` (the
# end of its X-Amz-Date window) is a replay and refused, on every worker and replica.
aws_request_signatures = Table(
    "aws_request_signatures",
    metadata,
    Column("signature", String(64), primary_key=True),
    Column("expires_at", Float, nullable=False),
    Index("ix_aws_request_signatures_expires_at", "expires_at"),
)

# The policy text of each repository's last StartLifecyclePolicyPreview (ECR API).
lifecycle_previews = Table(
    "lifecycle_previews",
    metadata,
    Column("repository", String(255), primary_key=True),
    Column("policy", String, nullable=False),
    Column("started_at", Float, nullable=False),
)

# The one registry policy document (id 1), as JSON text.
registry_policy = Table(
    "registry_policy",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("document", String, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Upstream credentials, sealed with AES-GCM (access/secrets.py): never in clear text here. The
# name is the associated data, so a row copied under another name does not decrypt; `key_id`
# tells "sealed under another key" apart from "tampered with".
secrets = Table(
    "secrets",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("nonce", LargeBinary, nullable=False),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Settings copied onto repositories the cache creates: `prefix` is a rule's prefix or ROOT.
creation_templates = Table(
    "creation_templates",
    metadata,
    Column("prefix", String(255), primary_key=True),
    Column("applied_for", String(255), nullable=False),  # JSON list: ["PULL_THROUGH_CACHE"]
    Column("lifecycle_policy", String, nullable=True),  # ECR lifecycle policy JSON
    Column("scan_on_pull", Integer, nullable=False),
    Column("description", String(1024), nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# A repository's own settings: copied from a template at creation, editable afterwards.
repository_settings = Table(
    "repository_settings",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id"), primary_key=True),
    Column("template_prefix", String(255), nullable=True),
    Column("lifecycle_policy", String, nullable=True),
    Column("scan_on_pull", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# When each manifest was last pulled through each repository, flushed in batches.
manifest_pulls = Table(
    "manifest_pulls",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id"), primary_key=True),
    Column("digest", String(150), primary_key=True),
    Column("last_pulled_at", Float, nullable=False),
    Column("pull_count", BigInteger, nullable=False),
)

# Background jobs (lifecycle, GC, size cap) run under a lease, so one worker runs each.
leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", Float, nullable=False),
)

# Locks every replica shares (metadata/lease_locks.py): a blob's fill, a tag's refresh. The
# holder is a random token per lock; `holder_url` is where other replicas reach its process.
locks = Table(
    "locks",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("holder", String(64), nullable=False),
    Column("holder_url", String(1024), nullable=False),
    Column("expires_at", Float, nullable=False),
)

# Pull-through rules as the admin API and `pullthrough apply` manage them. The configuration
# file's rules seed this table once, for a new data directory (metadata/rules.py).
pull_through_rules = Table(
    "pull_through_rules",
    metadata,
    Column("prefix", String(255), primary_key=True),
    Column("document", String, nullable=False),  # the rule's settings, JSON
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Small named facts about the registry as a whole: when the rules were seeded, the rules'
# version (bumped on every change, so workers reload), the scanning configuration.
registry_settings = Table(
    "registry_settings",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Counters per rule, summed over workers: served from disk or fetched from upstream.
cache_stats = Table(
    "cache_stats",
    metadata,
    Column("prefix", String(255), primary_key=True),
    Column("hits", BigInteger, nullable=False),
    Column("misses", BigInteger, nullable=False),
    Column("bytes_from_cache", BigInteger, nullable=False),
    Column("bytes_from_upstream", BigInteger, nullable=False),
    Column("since", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# The same counts per rule and five-minute bucket (its start, UNIX seconds), for the dashboard's
# charts; buckets older than the retention are deleted as new ones are written
# (metadata/stats_history.py).
cache_stats_history = Table(
    "cache_stats_history",
    metadata,
    Column("prefix", String(255), primary_key=True),
    Column("bucket", Float, primary_key=True),
    Column("hits", BigInteger, nullable=False),
    Column("misses", BigInteger, nullable=False),
    Column("bytes_from_cache", BigInteger, nullable=False),
    Column("bytes_from_upstream", BigInteger, nullable=False),
    Index("ix_cache_stats_history_bucket", "bucket"),
)

# Whether each rule's upstream answered lately, and its last error.
upstream_health = Table(
    "upstream_health",
    metadata,
    Column("prefix", String(255), primary_key=True),
    Column("last_success_at", Float, nullable=True),
    Column("last_error", String(1024), nullable=True),
    Column("last_error_at", Float, nullable=True),
    Column("updated_at", Float, nullable=False),
)

# The vulnerability database (scanning/vulndb): OSV advisories, each as its JSON record, the
# newest `modified` kept; `withdrawn` set for records OSV withdrew (they never match).
vulndb_advisories = Table(
    "vulndb_advisories",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("modified", Float, nullable=False),
    Column("withdrawn", Float, nullable=True),
    Column("document", String, nullable=False),
    Column("source", String(2048), nullable=False),  # the file, directory, zip or URL
    Column("imported_at", Float, nullable=False),
)

# Which advisories name which package: matching reads the rows of an image's packages by
# (ecosystem base, name) — `Debian` and the source package, `PyPI` and the PEP 503 name — and
# checks the release (`ecosystem`, as the record spells it: `Debian:12`) itself.
vulndb_packages = Table(
    "vulndb_packages",
    metadata,
    Column("ecosystem_base", String(64), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("ecosystem", String(255), primary_key=True),
    Column("advisory_id", String(255), primary_key=True),
    Index("ix_vulndb_packages_advisory", "advisory_id"),
)

# What each ecosystem's advisories were last read from (a path or an archive's URL), and when.
vulndb_sources = Table(
    "vulndb_sources",
    metadata,
    Column("ecosystem_base", String(64), primary_key=True),
    Column("source", String(2048), nullable=False),
    Column("checked_at", Float, nullable=False),
)

# Each downloaded `<ecosystem>/all.zip` and its validators, sent back on the next sync so an
# unchanged archive is answered 304 and not downloaded again.
vulndb_archives = Table(
    "vulndb_archives",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("etag", String(1024), nullable=True),
    Column("last_modified", String(255), nullable=True),
    Column("records", Integer, nullable=False),
    Column("checked_at", Float, nullable=False),
    Column("fetched_at", Float, nullable=True),
)

# Counters bumped in the same transaction as a change that every worker and replica must see
# at once: "access" (principals, passwords, API keys, the policy), "content" (manifests, tags
# and blobs that expiry, GC or a deletion took away). See metadata/revisions.py.
revisions = Table(
    "revisions",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# What each layer holds for scanning, by layer digest (metadata/layer_inventories.py): the
# package database files it carries, parsed, and its whiteouts and opaque directories, as JSON
# in the reader's `format` (a row of an older format is read again).
layer_inventories = Table(
    "layer_inventories",
    metadata,
    Column("digest", String(150), primary_key=True),
    Column("format", Integer, nullable=False),
    Column("document", String, nullable=False),
    Column("created_at", Float, nullable=False),
)

# One scan per platform image manifest (scanning/scans/): its state (queued, scanning, done,
# failed with `reason`), the repository its layers are read through, its platform from the
# image config, and its findings (JSON) as of vulnerability database revision
# `vulndb_revision`. A queued row is claimed by the worker that sets it scanning (`holder`).
scans = Table(
    "scans",
    metadata,
    Column("digest", String(150), primary_key=True),
    Column("repository", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(2048), nullable=True),
    Column("platform", String(128), nullable=True),
    Column("holder", String(128), nullable=True),
    Column("requested_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("vulndb_revision", BigInteger, nullable=True),
    Column("findings", String, nullable=True),
    Index("ix_scans_state", "state"),
)

# Admins' decisions that an image may be served whatever the gate says (scanning/gate.py).
scan_overrides = Table(
    "scan_overrides",
    metadata,
    Column("digest", String(150), primary_key=True),
    Column("reason", String(1024), nullable=False),
    Column("created_at", Float, nullable=False),
)
