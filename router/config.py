"""Configuration: ``domicile.toml`` (or the embedded default), validated strictly.

Every problem is reported as one ``ConfigError`` naming the offending key and value, so the CLI
can print one line and exit 2. The embedded default is expressed as the same document a user
would write and goes through the same validation.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from domicile.router.errors import ConfigError
from domicile.router.throttle import AUTH_FAILURES_PER_MINUTE
from domicile.shards.lookup_keys import DEFAULT_KINDS, KIND_NAME, Normalization
from domicile.shards.policy import (
    BUILTIN_GROUPS,
    CONNECT_TIMEOUT,
    DEFAULT_RULE,
    ISO_CODES,
    STATEMENT_TIMEOUT,
    Region,
    Rule,
    ShardSpec,
    Topology,
    group_members,
)
from domicile.shards.tls import BY_HOST, Tls, TlsMode

MIB = 1024 * 1024
# Anchored for pydantic's patterns (searched, not matched; its "$" is the very end).
_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Environment(BaseSettings):
    """The process environment domicile reads (``DOMICILE_*``)."""

    model_config = SettingsConfigDict(env_prefix="DOMICILE_", extra="ignore")

    config: Path | None = None
    data_dir: Path = Path("domicile-data")
    #: The lookup secret as hex (64+ digits), for routers that take it from their environment
    #: rather than from ``<data dir>/lookup.key``.
    lookup_secret: str | None = None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RegionModel(_Strict):
    country: str
    provider: str | None = None
    address: str | None = None
    legal_entity: str | None = None


class TlsModel(_Strict):
    mode: Literal["verify-full", "require", "disable"] | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


class _Timeouts(_Strict):
    #: Seconds (PostgreSQL): to open a connection, and for one statement.
    connect_timeout: float = Field(default=CONNECT_TIMEOUT, gt=0)
    statement_timeout: float = Field(default=STATEMENT_TIMEOUT, gt=0)


class ShardModel(_Timeouts):
    region: str
    url: str
    accepts_new_subjects: bool = True
    tls: TlsModel = TlsModel()


class RuleModel(_Strict):
    store_in: list[str]
    law: str | None = None
    #: RFC 3339, with its offset (a quoted string, or a TOML offset date-time)
    effective: str | datetime | None = None
    before: list[str] | None = None


class ComplyModel(_Strict):
    #: Warn (at start, and in metrics) when a scheduled rule is less than this many hours
    #: away and subjects are still to move.
    warn_within_hours: float = Field(default=168.0, gt=0)


class CatalogModel(_Timeouts):
    url: str | None = None
    tls: TlsModel = TlsModel()


class RedisTlsModel(_Strict):
    ca: str | None = None


class RedisModel(_Strict):
    url: str | None = None
    tls: RedisTlsModel = RedisTlsModel()


class ArchiveModel(_Strict):
    endpoint: str | None = None
    #: region name -> bucket in that region
    buckets: dict[str, str] = Field(default_factory=dict)
    retention_days: int = Field(default=365, ge=1)
    local_dir: str | None = None
    #: entries per archived bundle
    bundle_size: int = Field(default=1024, ge=1)
    #: PEM bundle of the CAs the S3 endpoint's certificate is checked against
    ca_bundle: str | None = None


class AuditModel(_Strict):
    signing_key: str | None = None
    archive: ArchiveModel = ArchiveModel()


class LookupKindModel(_Strict):
    normalize: Literal["email", "phone", "casefold", "exact"]


class ApiModel(_Strict):
    max_record_bytes: int = Field(default=MIB, ge=1)
    #: failed authentications per client address and minute before 429
    auth_failures_per_minute: int = Field(default=AUTH_FAILURES_PER_MINUTE, ge=1)


class ConfigFile(_Strict):
    deployment: str = Field(default="local", pattern=_NAME)
    data_dir: str | None = None
    regions: dict[str, RegionModel]
    shards: dict[str, ShardModel]
    policy: dict[str, RuleModel]
    groups: dict[str, list[str]] = Field(default_factory=dict)
    catalog: CatalogModel = CatalogModel()
    redis: RedisModel = RedisModel()
    audit: AuditModel = AuditModel()
    api: ApiModel = ApiModel()
    comply: ComplyModel = ComplyModel()
    #: Lookup kinds; without the section, the embedded default's (email, phone, username).
    lookups: dict[str, LookupKindModel] | None = None


@dataclass(frozen=True)
class ArchiveSettings:
    endpoint: str | None
    buckets: dict[str, str]
    retention_days: int
    local_dir: Path
    bundle_size: int
    ca_bundle: Path | None = None


@dataclass(frozen=True)
class Settings:
    """Everything a running domicile needs, resolved to absolute paths and URLs."""

    deployment: str
    data_dir: Path
    topology: Topology
    catalog_url: str
    redis_url: str | None
    signing_key_path: Path
    pseudonym_key_path: Path
    archive: ArchiveSettings
    max_record_bytes: int
    embedded: bool
    auth_failures_per_minute: int = AUTH_FAILURES_PER_MINUTE
    catalog_connect_timeout: float = CONNECT_TIMEOUT
    catalog_statement_timeout: float = STATEMENT_TIMEOUT
    #: How long before a scheduled rule takes effect subjects still to move are warned about.
    warn_within: timedelta = timedelta(days=7)
    catalog_tls: Tls = BY_HOST
    redis_ca: Path | None = None
    lookup_kinds: Mapping[str, Normalization] = field(default_factory=lambda: dict(DEFAULT_KINDS))
    #: Where the lookup secret is kept, created on first start, unless ``lookup_secret`` is
    #: given (from the environment).
    lookup_key_path: Path = Path("lookup.key")
    lookup_secret: bytes | None = field(default=None, repr=False)


def embedded_document(data_dir: Path) -> dict[str, Any]:
    """The embedded default topology (see the contract), as a config document."""

    def sqlite(name: str) -> str:
        return f"sqlite+aiosqlite:///{data_dir / 'shards' / f'{name}.sqlite'}"

    return {
        "regions": {
            "ru-msk": {"country": "RU"},
            "eu-fra": {"country": "DE"},
            "us-east": {"country": "US"},
        },
        "shards": {
            "ru-msk-1": {"region": "ru-msk", "url": sqlite("ru-msk-1")},
            "eu-fra-1": {"region": "eu-fra", "url": sqlite("eu-fra-1")},
            "us-east-1": {"region": "us-east", "url": sqlite("us-east-1")},
        },
        "policy": {
            "RU": {"store_in": ["ru-msk"], "law": "152-FZ art. 18(5) (as amended by 242-FZ)"},
            "EU": {"store_in": ["eu-fra"], "law": "GDPR chapter V"},
            "CN": {"store_in": [], "law": "PIPL art. 40"},
            DEFAULT_RULE: {"store_in": ["us-east"]},
        },
    }


def load_settings(config: Path | None = None, env: Environment | None = None) -> Settings:
    """Load ``--config``, else ``$DOMICILE_CONFIG``, else the embedded default."""
    env = env or Environment()
    path = config or env.config
    if path is None:
        data_dir = env.data_dir.resolve()
        return _build(embedded_document(data_dir), data_dir, embedded=True, env=env)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    document = _expand_env(document, "")
    base = path.resolve().parent
    raw_dir = document.get("data_dir")
    data_dir = (base / raw_dir).resolve() if isinstance(raw_dir, str) else env.data_dir.resolve()
    return _build(document, data_dir, embedded=False, env=env)


def _expand_env(value: Any, where: str) -> Any:
    """Substitute ``${VAR}`` in strings, so secrets (passwords in URLs) stay out of the file."""
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return os.environ[name]

        return _ENV_REF.sub(sub, value)
    return value


def _describe(error: ValidationError) -> str:
    # An unknown key is usually a typo of a missing one: name the typo.
    first = sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    key = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if first["type"] == "missing":
        return f"{key}: required key is missing"
    return f"{key}: {first['msg']} (got {first.get('input')!r})"


def _build(
    document: dict[str, Any], data_dir: Path, *, embedded: bool, env: Environment
) -> Settings:
    try:
        model = ConfigFile.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    topology = _topology(model)
    archive = model.audit.archive
    for region in archive.buckets:
        if region not in model.regions:
            raise ConfigError(
                f"audit.archive.buckets.{region}: {region!r} is not a declared region"
            )
    # A log is archived in its own region only: S3 for one region means S3 for all of them.
    if archive.buckets or archive.endpoint:
        for name, shard in model.shards.items():
            if shard.region not in archive.buckets:
                raise ConfigError(
                    f"audit.archive.buckets: region {shard.region!r} (of shard {name}) has no "
                    "bucket for its audit log"
                )
    return Settings(
        deployment=model.deployment,
        data_dir=data_dir,
        topology=topology,
        catalog_url=model.catalog.url or f"sqlite+aiosqlite:///{data_dir / 'catalog.sqlite'}",
        redis_url=model.redis.url,
        signing_key_path=Path(model.audit.signing_key or data_dir / "audit-signing.key"),
        pseudonym_key_path=data_dir / "pseudonym.key",
        archive=ArchiveSettings(
            endpoint=archive.endpoint,
            buckets=dict(archive.buckets),
            retention_days=archive.retention_days,
            local_dir=Path(archive.local_dir) if archive.local_dir else data_dir / "archive",
            bundle_size=archive.bundle_size,
            ca_bundle=_pem_file("audit.archive.ca_bundle", archive.ca_bundle),
        ),
        max_record_bytes=model.api.max_record_bytes,
        embedded=embedded,
        auth_failures_per_minute=model.api.auth_failures_per_minute,
        catalog_connect_timeout=model.catalog.connect_timeout,
        catalog_statement_timeout=model.catalog.statement_timeout,
        warn_within=timedelta(hours=model.comply.warn_within_hours),
        catalog_tls=_tls("catalog", model.catalog.tls, model.catalog.url),
        redis_ca=_pem_file("redis.tls.ca", model.redis.tls.ca),
        lookup_kinds=_lookup_kinds(model.lookups),
        lookup_key_path=data_dir / "lookup.key",
        lookup_secret=_lookup_secret(env.lookup_secret),
    )


def _lookup_kinds(kinds: dict[str, LookupKindModel] | None) -> dict[str, Normalization]:
    if kinds is None:
        return dict(DEFAULT_KINDS)
    for kind in kinds:
        if not KIND_NAME.fullmatch(kind):
            raise ConfigError(
                f"lookups.{kind}: a kind is 1-32 of lower-case letters, digits and '_', "
                "starting with a letter"
            )
    return {kind: Normalization(spec.normalize) for kind, spec in kinds.items()}


def _lookup_secret(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        secret = bytes.fromhex(value.strip())
    except ValueError:
        secret = b""
    if len(secret) < 32:
        raise ConfigError("DOMICILE_LOOKUP_SECRET: must be at least 64 hexadecimal digits")
    return secret


#: TLS options a libpq-style url may carry; domicile takes them from the ``tls`` section.
_URL_TLS_OPTIONS = ("ssl", "sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl")


def _tls(key: str, model: TlsModel, url: str | None) -> Tls:
    if url is not None:
        options = set(make_url(url).query) & set(_URL_TLS_OPTIONS)
        if options:
            raise ConfigError(
                f"{key}.url: {', '.join(sorted(options))} belong in [{key}.tls] "
                "(mode, ca, cert, key), not in the url"
            )
    if (model.cert is None) != (model.key is None):
        raise ConfigError(f"{key}.tls: cert and key go together")
    return Tls(
        mode=None if model.mode is None else TlsMode(model.mode),
        ca=_pem_file(f"{key}.tls.ca", model.ca),
        cert=_pem_file(f"{key}.tls.cert", model.cert),
        key=_pem_file(f"{key}.tls.key", model.key),
    )


def _pem_file(key: str, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_file():
        raise ConfigError(f"{key}: {value!r} is not a file")
    return path


def _instant(key: str, value: str | datetime) -> datetime:
    """An RFC 3339 time with its offset, as a UTC instant."""
    when = value
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(
                f"policy.{key}.effective: {value!r} is not an RFC 3339 time "
                "(like 2015-09-01T00:00:00+03:00)"
            ) from None
    assert isinstance(when, datetime)
    if when.tzinfo is None:
        raise ConfigError(
            f"policy.{key}.effective: {value!s} has no offset; write it with one (Z or +03:00)"
        )
    return when.astimezone(UTC)


def _topology(model: ConfigFile) -> Topology:
    regions: dict[str, Region] = {}
    for name, region in model.regions.items():
        if not re.fullmatch(_NAME, name):
            raise ConfigError(f"regions.{name}: region names are lower-case letters, digits, '-'")
        if region.country not in ISO_CODES:
            raise ConfigError(
                f"regions.{name}.country: {region.country!r} is not an ISO 3166-1 alpha-2 code"
            )
        regions[name] = Region(
            name, region.country, region.provider, region.address, region.legal_entity
        )
    if not regions:
        raise ConfigError("regions: at least one region must be declared")

    shards: dict[str, ShardSpec] = {}
    for name, shard in model.shards.items():
        if not re.fullmatch(_NAME, name):
            raise ConfigError(f"shards.{name}: shard names are lower-case letters, digits, '-'")
        if shard.region not in regions:
            raise ConfigError(f"shards.{name}.region: {shard.region!r} is not a declared region")
        if not shard.url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ConfigError(
                f"shards.{name}.url: must start with postgresql+asyncpg:// or sqlite+aiosqlite://"
            )
        shards[name] = ShardSpec(
            name,
            shard.region,
            shard.url,
            shard.accepts_new_subjects,
            connect_timeout=shard.connect_timeout,
            statement_timeout=shard.statement_timeout,
            tls=_tls(f"shards.{name}", shard.tls, shard.url),
        )
    if not shards:
        raise ConfigError("shards: at least one shard must be declared")

    for group, members in model.groups.items():
        if (
            group in ISO_CODES
            or group == DEFAULT_RULE
            or not re.fullmatch(r"[A-Z][A-Z0-9_]+", group)
        ):
            raise ConfigError(
                f"groups.{group}: a group name is upper case and not a jurisdiction code"
            )
        for code in members:
            if code not in ISO_CODES:
                raise ConfigError(f"groups.{group}: {code!r} is not an ISO 3166-1 alpha-2 code")
    groups = group_members(model.groups)

    rules: dict[str, Rule] = {}
    for key, rule in model.policy.items():
        if key != DEFAULT_RULE and key not in ISO_CODES and key not in groups:
            raise ConfigError(
                f"policy.{key}: {key!r} is not an ISO 3166-1 alpha-2 code, a group or 'default'"
            )
        for field_name, names in (("store_in", rule.store_in), ("before", rule.before or [])):
            for region_name in names:
                if region_name not in regions:
                    raise ConfigError(
                        f"policy.{key}.{field_name}: {region_name!r} is not a declared region"
                    )
        if rule.before is not None and rule.effective is None:
            raise ConfigError(f"policy.{key}.before: only a rule with `effective` has one")
        rules[key] = Rule(
            key,
            tuple(rule.store_in),
            rule.law,
            effective=None if rule.effective is None else _instant(key, rule.effective),
            before=tuple(rule.before or ()),
        )

    # A jurisdiction governed by two group rules would be ambiguous.
    ruled_groups = [g for g in groups if g in rules]
    for code in ISO_CODES - rules.keys():
        owners = [g for g in ruled_groups if code in groups[g]]
        if len(owners) > 1:
            raise ConfigError(
                f"policy: {code} is in groups {', '.join(owners)} which both have rules; "
                f"add policy.{code} to settle it"
            )
    used_groups = {g: m for g, m in groups.items() if g in rules or g in BUILTIN_GROUPS}
    return Topology(regions=regions, shards=shards, rules=rules, groups=used_groups)
