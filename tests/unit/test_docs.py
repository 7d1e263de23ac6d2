"""Docs that stand alone: the protocol reference, its JSON Schema and the OpenAPI document agree with
the code, and nothing sends a reader to a document the repository does not have."""

from __future__ import annotations

import json
import re
import tomllib
import typing
import unicodedata
from pathlib import Path

import msgspec
import pytest
from paths import ROOT
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient

from presence import errors, settings_table
from presence.http import openapi
from presence.http.app import create_app
from presence.ops.control import CLOSED_BY_OPERATOR
from presence.settings import Settings
from presence.wire import messages, schema

PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()


def tags(union: object) -> list[str]:
    return [str(t.__struct_config__.tag) for t in typing.get_args(union)]


def subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *subclasses(sub)]
    return out


# -- the JSON Schema ---------------------------------------------------------------------------


def test_protocol_schema_is_generated_from_the_current_structs() -> None:
    committed = (ROOT / schema.SCHEMA_PATH).read_text()
    assert committed == schema.render(), "the message structs changed: run python -m presence.wire.schema --write"


def test_protocol_schema_names_every_message_and_accepts_what_the_server_sends() -> None:
    doc = schema.protocol_schema()
    defs = doc["$defs"]
    client = [defs[r["$ref"].rsplit("/", 1)[1]] for r in defs["ClientMessage"]["anyOf"]]
    server = [defs[r["$ref"].rsplit("/", 1)[1]] for r in defs["ServerMessage"]["anyOf"]]
    assert sorted(d["properties"]["type"]["enum"][0] for d in client) == sorted(tags(messages.ClientMessage))
    assert sorted(d["properties"]["type"]["enum"][0] for d in server) == sorted(tags(messages.ServerMessage))
    # an encoded frame has exactly the fields its schema lists, the required ones included
    frame = json.loads(messages.encode(messages.Acquired(fence=7, ttl_ms=900, id="1", rejoined=True)))
    acquired = defs["Acquired"]
    assert set(frame) <= set(acquired["properties"]) and set(acquired["required"]) <= set(frame)


# -- the settings table -------------------------------------------------------------------------


def test_the_settings_table_is_generated_from_the_current_fields() -> None:
    committed = settings_table.CONFIGURATION_DOC.read_text()
    assert committed == settings_table.splice(committed), (
        "the Settings fields changed: run python -m presence.settings_table --write"
    )


def test_the_settings_table_lists_every_setting_once_and_names_no_other() -> None:
    page = settings_table.CONFIGURATION_DOC.read_text()
    table = page.split(settings_table.BEGIN)[1].split(settings_table.END)[0]
    listed = re.findall(r"^\| `(PRESENCE_[A-Z_]+)`", table, re.M)
    fields = [f"PRESENCE_{name.upper()}" for name in Settings.__dataclass_fields__]
    assert listed == fields
    # and the page's prose names only settings that exist
    named = set(re.findall(r"\bPRESENCE_[A-Z_]+[A-Z]\b", page))
    assert named <= set(fields), named - set(fields)


def test_the_readme_sends_readers_to_the_configuration_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "](docs/configuration.md)" in readme
    assert "| `PRESENCE_HEARTBEAT_MS` |" not in readme  # the table lives in one place


# -- docs/protocol.md --------------------------------------------------------------------------


@pytest.mark.parametrize("tag", tags(messages.ClientMessage) + tags(messages.ServerMessage))
def test_protocol_md_has_a_section_for_every_message(tag: str) -> None:
    assert f"\n### `{tag}`\n" in PROTOCOL, f"docs/protocol.md lacks a '### `{tag}`' section"


@pytest.mark.parametrize("struct", [
    t for union in (messages.ClientMessage, messages.ServerMessage) for t in typing.get_args(union)
], ids=lambda t: t.__name__)
def test_protocol_md_names_every_field(struct: type[msgspec.Struct]) -> None:
    tag = struct.__struct_config__.tag
    section = PROTOCOL.split(f"\n### `{tag}`\n", 1)[1].split("\n### ", 1)[0]
    for field in msgspec.structs.fields(struct):
        state_fields = ("holder", "viewers", "queue", "request", "seq", "workspace", "locks")
        if field.encode_name in state_fields and tag == "state":
            continue  # a state's fields are those of the State object, described once
        assert f"`{field.encode_name}" in section, f"{tag}.{field.encode_name} is not described"


def test_protocol_md_lists_every_close_code_and_error_code() -> None:
    closes = PROTOCOL.split("## Close codes", 1)[1].split("\n## ", 1)[0]
    codes = {c.close_code for c in subclasses(errors.CloseError)} | {CLOSED_BY_OPERATOR, 1000, 1009, 1011}
    for code in sorted(codes):
        assert f"\n| {code} |" in closes, f"close code {code} is not in docs/protocol.md"
    table = PROTOCOL.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    for code in sorted({c.code for c in subclasses(errors.RequestError)} | {"internal"}):
        assert f"\n| `{code}` |" in table, f"error code {code} is not in docs/protocol.md"


def test_protocol_md_examples_are_valid_frames() -> None:
    """Every one-line JSON example of a frame decodes as the message it shows."""
    decoder = msgspec.json.Decoder(messages.ClientMessage | messages.ServerMessage)  # type: ignore[operator]
    examples = re.findall(r"```json\n(\{.*?\})\n```", PROTOCOL, re.S)
    assert len(examples) >= 8
    for raw in examples:
        assert json.loads(msgspec.json.encode(decoder.decode(raw))) == json.loads(raw), raw


# -- OpenAPI ------------------------------------------------------------------------------------


def test_openapi_document_is_current() -> None:
    committed = json.loads((ROOT / openapi.DOC_PATH).read_text())
    generated = openapi.openapi()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert committed["info"].pop("version") == version
    generated["info"].pop("version")
    assert committed == generated, "the HTTP API changed: run python -m presence.http.openapi --write"


def _described_routes() -> set[tuple[str, str]]:
    return {(path, method) for path, ops in openapi.openapi()["paths"].items() for method in ops}


def _app_routes() -> set[tuple[str, str]]:
    out = set()
    for route in create_app(Settings()).routes:
        if not isinstance(route, Route | WebSocketRoute):
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)
        if not path.startswith(("/api/v1", "/admin/api")):
            continue
        methods = (route.methods or set()) - {"HEAD"} if isinstance(route, Route) else {"GET"}
        out |= {(path, m.lower()) for m in methods}
    return out


def test_every_api_and_admin_route_is_in_the_openapi_document_and_nothing_else() -> None:
    app, described = _app_routes(), _described_routes()
    assert app - described == set(), "routes missing from presence/http/openapi.py"
    assert described - app == set(), "described routes the app does not have"
    assert len(app) >= 8


def test_openapi_json_is_served() -> None:
    r = TestClient(create_app(Settings(secret="s" * 40))).get("/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.json()["paths"].keys() == openapi.openapi()["paths"].keys()


# -- nothing points outside the repository -----------------------------------------------------


def test_no_reference_to_a_spec_the_repository_does_not_have() -> None:
    files = [ROOT / "README.md", ROOT / "mkdocs.yml", *ROOT.glob("docs/*.md"), *ROOT.glob("static/*"),
             *ROOT.glob("presence/**/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("tests/**/*.mjs")]
    offenders = [
        f"{f.relative_to(ROOT)}:{n}" for f in files if f.is_file()
        for n, line in enumerate(f.read_text(errors="replace").splitlines(), 1)
        if re.search(r"\bSPEC\b|SPEC\.md", line) and f.name != "test_docs.py"
    ]
    assert offenders == []


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(((?:docs|static)/[^)#]+)\)", readme):
        assert (ROOT / target).is_file(), target
    # every other link of the front page too, and the heading an #anchor names
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert len(links) >= 15
    for link in links:
        if not link.startswith(("http://", "https://")):
            assert _resolves(ROOT / "README.md", link), link


# -- the docs site and the pages' links ------------------------------------------------------------

README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
REPO_URL = "https://github.com/presence-server/presence"


def _headings(page: Path) -> list[str]:
    """The page's headings, as written (fenced code is not Markdown: a `# comment` there is none)."""
    out, fenced = [], False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6} (.+)$", line)):
            out.append(m.group(1).strip())
    return out


def _site_anchor(heading: str) -> str:
    """The anchor MkDocs gives a heading (Python-Markdown's toc slugify)."""
    text = re.sub(r"`([^`]*)`", r"\1", re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading))
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", text).strip().lower())


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives the same heading."""
    text = re.sub(r"`([^`]*)`", r"\1", re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading))
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _resolves(source: Path, link: str) -> bool:
    """Whether a relative link of ``source`` names an existing file and, with ``#x``, a heading of it."""
    path, _, anchor = link.partition("#")
    target = (source.parent / path).resolve() if path else source
    if not target.exists():
        return False
    return not anchor or anchor in {_site_anchor(h) for h in _headings(target)}


def test_the_front_page_stays_a_front_page() -> None:
    readme = README.read_text()
    assert len(readme.encode()) <= 12_000, "README.md is the front page: move the detail into a page of docs/"
    assert "](docs/demo.png)" in readme and (ROOT / "docs" / "demo.png").stat().st_size < 200_000
    for section in ("## Run", "## Test", "## Use it in your app", "## Documentation"):
        assert f"\n{section}\n" in readme, section
    # the pages' own tables live in one place
    assert "| `hello` |" not in readme and "| `<prefix>:{ws}:lease` |" not in readme


def test_every_heading_has_the_same_anchor_on_the_site_and_on_github() -> None:
    """Links to `page.md#anchor` work in both places only while the two slugs agree."""
    for page in [README, *PAGES]:
        for heading in _headings(page):
            assert _site_anchor(heading) == _github_anchor(heading), f"{page.name}: {heading!r}"


def test_mkdocs_nav_lists_every_page_once() -> None:
    nav = re.findall(r"^  - [^:]+: (\S+\.md)$", (ROOT / "mkdocs.yml").read_text(), re.M)
    assert sorted(nav) == [p.name for p in PAGES] and len(set(nav)) == len(nav)


def test_links_out_of_the_pages_resolve() -> None:
    """MkDocs checks the links between pages (``mkdocs build --strict``); these point elsewhere:
    into the repository's files on GitHub, or at a heading of the front page."""
    checked = 0
    for page in [README, *PAGES]:
        for link in re.findall(r"\]\((https://github\.com/presence-server/presence[^)\s]*)\)", page.read_text()):
            rest = link.removeprefix(REPO_URL)
            if rest.startswith("#"):
                anchor = rest[1:]
                assert anchor == "readme" or anchor in {_github_anchor(h) for h in _headings(README)}, (page, link)
            else:
                m = re.fullmatch(r"/(?:blob|tree)/main/([^#]+)", rest)
                assert m and (ROOT / m.group(1)).exists(), (page.name, link)
            checked += 1
    assert checked >= 3


def test_every_file_the_pages_name_exists() -> None:
    """A page naming `presence/core/x.py` or `tests/test_y.py` sends the reader to a real file."""
    named = 0
    for page in [README, *PAGES]:
        for path in re.findall(r"`((?:presence|static|tests|examples|docs|\.ci)/[^`\s*<>]*)`", page.read_text()):
            assert (ROOT / path).exists(), f"{page.name} names {path}, which does not exist"
            named += 1
    assert named >= 50


def test_the_source_map_lists_every_module() -> None:
    """Each directory of presence/ has a section in the source map with a row for each module (a new
    module needs its row in docs/architecture.md), and every name it lists exists."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    source_map = text.split("\n## Source map\n", 1)[1].split("\n## ", 1)[0]
    sections = dict(re.findall(r"^### `(presence/[^`]*)`\n(.*?)(?=^### |\Z)", source_map, re.M | re.S))
    packages = {  # the directories with modules (gateway/lua/ is a package only to ship its scripts)
        f"{d.relative_to(ROOT)}/" for d in (ROOT / "presence").rglob("*")
        if d.is_dir() and any(p.name != "__init__.py" for p in d.glob("*.py"))
    }
    assert set(sections) == packages | {"presence/"}, "a package of presence/ without its section, or the reverse"
    for directory, body in sections.items():
        listed = {name.strip("` ") for row in re.findall(r"^\| (`[^|]+) \|", body, re.M) for name in row.split(",")}
        for name in listed:
            assert (ROOT / directory / name).exists(), f"the source map lists {directory}{name}"
        here = ROOT / directory
        wanted = {p.name for p in here.glob("*.py")} | {
            f"{p.name}/" for p in here.iterdir() if p.is_dir() and p.name != "__pycache__"
            and f"{p.relative_to(ROOT)}/" not in sections
        }
        wanted -= {"__init__.py"} if directory != "presence/" else set()
        assert wanted <= listed, f"{directory}: not in the source map: {sorted(wanted - listed)}"
