"""What is under the landing root: the files to load, and every other path with the reason
it is not loaded.

Nothing under the landing root is passed over in silence (SPEC "Operating promises"): a path
is either a file to load (in a ``<system>/<entity>/<YYYY-MM-DD>/`` folder of a known entity,
dated on or before the run's date, in a landing format) or an :class:`IgnoredPath` naming why
not (an unknown system or entity folder with the closest valid name, a directory where a file
was expected, a date folder that is not a date, an unsupported file type, a hidden entry).
Date folders after the run's date are neither: they are loaded on their own night.

A pure walk of the file system: the loader decides what an ignored path means for the night
(``ingest.on_unknown_path``) and records them in ``tierflow_meta.ignored_paths``.
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from tierflow.extracts import BY_PATH, LOAD_ORDER, Entity
from tierflow.ingest.readers import FORMATS, file_format

SYSTEMS: tuple[str, ...] = tuple(dict.fromkeys(e.system for e in BY_PATH.values()))


class LandingError(RuntimeError):
    """The landing root cannot be walked safely (missing, or a link out of it)."""


@dataclass(frozen=True)
class LandingFile:
    path: Path
    relpath: str
    entity: Entity
    business_date: date


@dataclass(frozen=True)
class IgnoredPath:
    """A path under the landing root that is not loaded. ``may_hold_data``: it looks like a
    delivery put in the wrong place (a folder, a file in a landing format), so data the night
    needs may be missing; ``ingest.on_unknown_path: fail`` fails the night on such a path.
    Hidden entries and stray non-data files (a README, the demo's manifest) never do."""

    path: str  # relative to the landing root; folders end with "/"
    kind: str
    reason: str
    may_hold_data: bool

    def as_dict(self) -> dict:
        return {"path": self.path, "kind": self.kind, "reason": self.reason}


FORMAT_NAMES = ", ".join(FORMATS)
HIDDEN_REASON = "hidden (its name starts with a dot): not read, e.g. a delivery still being written"


def _closest(name: str, candidates: list[str]) -> str | None:
    """The valid name a mistyped folder name most likely meant."""
    for c in candidates:
        if c.lower() == name.lower():
            return c
    match = difflib.get_close_matches(name.lower(), candidates, n=1, cutoff=0.6)
    return match[0] if match else None


def _file_count(folder: Path, cap: int = 10_000) -> str:
    n = sum(1 for p in itertools.islice(folder.rglob("*"), cap) if p.is_file())
    return f"{n:,}{'+' if n >= cap else ''} file{'s' if n != 1 else ''} in it"


def _rel(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return rel + "/" if path.is_dir() else rel


def _stray_file(path: Path, root: Path, expected: str) -> IgnoredPath:
    data = file_format(path) is not None
    return IgnoredPath(
        _rel(path, root), "misplaced_file",
        f"a file where {expected} was expected"
        + (" (a landing format: a delivery in the wrong place?)" if data else ""),
        may_hold_data=data,
    )


def _inside(entry: Path, root: Path) -> Path:
    """The entry's real path, refused when a link leads out of the landing root."""
    real = entry.resolve()
    if not real.is_relative_to(root):
        raise LandingError(f"{entry}: points outside the landing root {root}; refusing to read it")
    return real


def discover(landing: Path, as_of: date) -> tuple[list[LandingFile], list[IgnoredPath]]:
    """Files in date folders <= as_of, in load order; and every path not loaded, with why."""
    root = landing.resolve()
    if not root.is_dir():
        raise LandingError(f"landing folder {landing} does not exist (set TIERFLOW_LANDING)")
    found: list[LandingFile] = []
    ignored: list[IgnoredPath] = []
    entity_names = sorted(BY_PATH)
    for system_dir in sorted(root.iterdir()):
        name = system_dir.name
        if name.startswith("."):
            ignored.append(IgnoredPath(_rel(system_dir, root), "hidden", HIDDEN_REASON, False))
            continue
        _inside(system_dir, root)
        if not system_dir.is_dir():
            ignored.append(_stray_file(system_dir, root, f"a system folder ({', '.join(SYSTEMS)})"))
            continue
        if name not in SYSTEMS:
            guess = _closest(name, list(SYSTEMS))
            hint = f"did you mean {guess}/?" if guess else f"known: {', '.join(SYSTEMS)}"
            ignored.append(IgnoredPath(
                _rel(system_dir, root), "unknown_system",
                f"unknown system folder ({_file_count(system_dir)}); {hint}", True))
            continue
        for entity_dir in sorted(system_dir.iterdir()):
            rel_entity = f"{name}/{entity_dir.name}"
            if entity_dir.name.startswith("."):
                ignored.append(IgnoredPath(_rel(entity_dir, root), "hidden", HIDDEN_REASON, False))
                continue
            _inside(entity_dir, root)
            if not entity_dir.is_dir():
                ignored.append(_stray_file(entity_dir, root, f"an entity folder of {name}/"))
                continue
            if rel_entity not in BY_PATH:
                guess = _closest(rel_entity, entity_names) or _closest(entity_dir.name, [
                    p.split("/")[1] for p in entity_names if p.startswith(f"{name}/")])
                if guess and "/" not in guess:
                    guess = f"{name}/{guess}"
                known = [p for p in entity_names if p.startswith(f"{name}/")]
                hint = f"did you mean {guess}/?" if guess else f"known: {', '.join(known)}"
                ignored.append(IgnoredPath(
                    _rel(entity_dir, root), "unknown_entity",
                    f"unknown entity folder ({_file_count(entity_dir)}); {hint}", True))
                continue
            found.extend(_date_folders(entity_dir, BY_PATH[rel_entity], root, as_of, ignored))
    # load by business date, then by entity order (referenced entities first), then name
    order = {p: i for i, p in enumerate(LOAD_ORDER)}
    found.sort(key=lambda lf: (lf.business_date, order[lf.entity.path], lf.relpath))
    return found, ignored


def _date_folders(
    folder: Path, entity: Entity, root: Path, as_of: date, ignored: list[IgnoredPath]
) -> list[LandingFile]:
    found: list[LandingFile] = []
    for day_dir in sorted(folder.iterdir()):
        if day_dir.name.startswith("."):
            ignored.append(IgnoredPath(_rel(day_dir, root), "hidden", HIDDEN_REASON, False))
            continue
        _inside(day_dir, root)
        if not day_dir.is_dir():
            ignored.append(_stray_file(day_dir, root, "a YYYY-MM-DD date folder"))
            continue
        try:
            day = date.fromisoformat(day_dir.name)
            if len(day_dir.name) != 10:  # fromisoformat also takes 20260301
                raise ValueError
        except ValueError:
            ignored.append(IgnoredPath(
                _rel(day_dir, root), "not_a_date_folder",
                f"not a YYYY-MM-DD date folder ({_file_count(day_dir)})", True))
            continue
        if day > as_of:
            continue  # loaded on its own night
        for f in sorted(day_dir.iterdir()):
            if f.name.startswith("."):
                ignored.append(IgnoredPath(_rel(f, root), "hidden", HIDDEN_REASON, False))
                continue
            _inside(f, root)
            if f.is_dir():
                ignored.append(IgnoredPath(
                    _rel(f, root), "directory_not_file",
                    f"a directory where a file was expected ({_file_count(f)})", True))
                continue
            if not f.is_file():
                ignored.append(IgnoredPath(
                    _rel(f, root), "not_a_file", "not a regular file (a broken link, a pipe?)", True))
                continue
            found.append(LandingFile(f, _rel(f, root), entity, day))
    return found


def unsupported(lf: LandingFile) -> IgnoredPath | None:
    """A file in a date folder that is not in a landing format (``orders.xlsx``)."""
    if file_format(lf.path) is not None:
        return None
    return IgnoredPath(lf.relpath, "unsupported_file",
                       f"unsupported file type (expected one of {FORMAT_NAMES})", True)
