"""Model checking of the hand-off protocol: spin on ``spec/handoff.pml``.

The model must verify with no error and a completely explored state space
(safety and end states; then termination, as the absence of non-progress
cycles). Its names must be the Python enums' names, and every phase change
it makes must be a transition of the Python tables (and back). Broken
variants of it must fail -- proof the checks can.

spin and gcc are needed (Debian package ``spin``; ``tools/test-services`` installs it).
Without them these tests are skipped -- except in CI (``CI=true``), where a
missing tool is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from devmig.migration import (
    DESTINATION_TRANSITIONS,
    SOURCE_TRANSITIONS,
    DestinationPhase,
    Message,
    Outcome,
    SourcePhase,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "spec" / "handoff.pml"
TOOLS = ("spin", "gcc")
#: Bounds for the verifier: depth, and a hash table far larger than the state space.
PAN_ARGS = ("-m200000", "-w24")


def _need_tools() -> None:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed (Debian: apt-get install spin gcc)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI needs the model checker: {message}")
    pytest.skip(message)


@dataclass(frozen=True)
class Verification:
    """The output of one verifier run, with the numbers the tests read."""

    output: str

    @property
    def errors(self) -> int:
        m = re.search(r"errors: (\d+)", self.output)
        assert m, self.output
        return int(m.group(1))

    @property
    def states(self) -> int:
        m = re.search(r"(\d+) states, stored", self.output)
        assert m, self.output
        return int(m.group(1))

    @property
    def complete(self) -> bool:
        # "Full" and not "Bit statespace search": every state stored, none approximated
        return (
            "Full statespace search" in self.output
            and "Search not completed" not in self.output
            and "max search depth too small" not in self.output
        )

    @property
    def violations(self) -> list[str]:
        found = re.findall(r"pan:\d+: (.*?) \(at depth \d+\)", self.output)
        return [" ".join(v.split()) for v in found]  # spin pads some expressions


def verify(model_text: str, workdir: Path, *, mode: str, keep_going: bool = False) -> Verification:
    """Generate, compile and run spin's verifier for a model.

    Args:
        model_text: the Promela source.
        workdir: an empty directory to build in.
        mode: ``"safety"`` (assertions and invalid end states) or
            ``"progress"`` (non-progress cycles: every run ends).
        keep_going: report every error, not only the first.
    """
    (workdir / "model.pml").write_text(model_text, encoding="utf-8")
    run = {"cwd": workdir, "capture_output": True, "text": True, "timeout": 600}
    generated = subprocess.run(["spin", "-a", "model.pml"], check=False, **run)  # type: ignore[call-overload]
    assert generated.returncode == 0, generated.stdout + generated.stderr
    flag = "-DSAFETY" if mode == "safety" else "-DNP"
    # -O0: the search takes well under a second; optimising pan.c takes ten
    compiled = subprocess.run(["gcc", "-O0", flag, "-o", "pan", "pan.c"], check=False, **run)  # type: ignore[call-overload]
    assert compiled.returncode == 0, compiled.stderr
    args = ["./pan", *PAN_ARGS]
    if mode == "progress":
        args.append("-l")
    if keep_going:
        args.append("-c0")
    result = subprocess.run(args, check=False, **run)  # type: ignore[call-overload]
    return Verification(result.stdout + result.stderr)


def _model() -> str:
    return MODEL.read_text(encoding="utf-8")


# --------------------------------------------------------------------------
# The model verifies
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["safety", "progress"])
def test_model_verifies(mode: str, tmp_path: Path) -> None:
    _need_tools()
    result = verify(_model(), tmp_path, mode=mode)
    assert result.errors == 0, result.output
    assert result.complete, result.output
    assert result.states > 10_000, result.output  # the faults are in the model
    if mode == "safety":
        assert "invalid end states\t+" in result.output  # end states were checked


# --------------------------------------------------------------------------
# The model can fail
# --------------------------------------------------------------------------

_COMMIT_RULE = ":: atomic { src_alive && sphase == COMMITTED -> s_to(IN_DOUBT) }"
_TWO_RUNNING = "assertion violated !((src_running&&dst_running))"

_BROKEN = {
    # the COMMITTED rule removed: a source that gets no ACK after GO resumes
    "committed-source-resumes-on-timeout": (
        _COMMIT_RULE,
        ":: atomic { src_alive && sphase == COMMITTED -> s_to(ROLLED_BACK); resume() }",
        _TWO_RUNNING,
    ),
    # a destination runs without journaling STARTED first
    "start-without-journal": (
        ":: atomic { dst_alive && dphase == STARTING && dst_started ->",
        ":: atomic { dst_alive && dphase == STARTING ->",
        "assertion violated !((src_resumed&&dst_ran))",
    ),
    # a destination answers a source's query ABORTED but keeps its copy
    "abort-answer-without-destroying": (
        "sq?QUERY; d_to(STARTING); reply(sr, PENDING) }",
        "sq?QUERY; reply(sr, ABORTED) }",
        _TWO_RUNNING,
    ),
    # a destination destroys its loaded copy on its own when GO does not come
    "wait-go-timeout-destroys": (
        ":: atomic { dst_alive && dphase == WAIT_GO -> d_to(WAIT_DECISION) }",
        ":: atomic { dst_alive && dphase == WAIT_GO -> d_to(DESTROYED) }",
        "assertion violated (dst_running&& !(src_running))",
    ),
    # the source never asks again once in doubt: it may wait forever
    "no-retry-when-in-doubt": (
        ":: atomic { src_alive && sphase == IN_DOUBT && src_waiting && timeout -> src_waiting = false }",
        "",
        "invalid end state",
    ),
}


@pytest.mark.parametrize("name", sorted(_BROKEN))
def test_broken_model_fails(name: str, tmp_path: Path) -> None:
    _need_tools()
    original, broken, expected = _BROKEN[name]
    text = _model()
    assert text.count(original) == 1, f"the model no longer has: {original}"
    result = verify(text.replace(original, broken), tmp_path, mode="safety", keep_going=True)
    assert result.errors > 0, result.output
    assert any(expected in v for v in result.violations), result.violations[:10]


def test_busy_retry_is_a_non_progress_cycle(tmp_path: Path) -> None:
    """Asking again at once on PENDING (no back-off) can loop forever."""
    _need_tools()
    original = "sr?[STATUS, PENDING] -> sr?STATUS, PENDING }"
    text = _model()
    assert text.count(original) == 1
    broken = text.replace(
        original, "sr?[STATUS, PENDING] -> sr?STATUS, PENDING; src_waiting = false }"
    )
    result = verify(broken, tmp_path, mode="progress")
    assert result.errors > 0 and "non-progress cycle" in result.output, result.output


# --------------------------------------------------------------------------
# The model and the code agree (no tools needed)
# --------------------------------------------------------------------------


def _mtypes() -> dict[str, set[str]]:
    found = re.findall(r"^mtype:(\w+)\s*=\s*\{([^}]*)\}", _model(), re.MULTILINE)
    return {name: {n.strip() for n in body.split(",")} for name, body in found}


def test_names_are_the_python_names() -> None:
    mtypes = _mtypes()
    assert mtypes["msg"] == {m.name for m in Message}
    assert mtypes["source_phase"] == {p.name for p in SourcePhase}
    assert mtypes["destination_phase"] == {p.name for p in DestinationPhase}
    assert mtypes["outcome"] == {o.name for o in Outcome}


def _proctype(name: str) -> str:
    text = _model()
    start = text.index(f"active proctype {name}()")
    end = text.find("active proctype", start + 1)
    return text[start : end if end != -1 else len(text)]


def _model_arcs(proctype: str, var: str, move: str) -> set[tuple[str, str]]:
    """Every ``var == A ... move(B)`` within one ``:: atomic { ... }`` alternative."""
    arcs: set[tuple[str, str]] = set()
    for alternative in re.split(r"\n\s*::\s*atomic\s*\{", _proctype(proctype))[1:]:
        targets = re.findall(rf"{move}\((\w+)\)", alternative)
        guard = alternative.split("->", 1)[0]
        sources = re.findall(rf"{var} == (\w+)", guard)
        assert len(targets) <= 1, alternative
        arcs |= {(a, b) for a in sources for b in targets if a != b}
    return arcs


def _table_arcs(table: object) -> set[tuple[str, str]]:
    assert isinstance(table, type(SOURCE_TRANSITIONS))
    return {(p.name, q.name) for (p, _), q in table.items() if p is not q}


def test_model_phase_changes_are_the_tables() -> None:
    assert _model_arcs("Source", "sphase", "s_to") == _table_arcs(SOURCE_TRANSITIONS)
    assert _model_arcs("Destination", "dphase", "d_to") == _table_arcs(DESTINATION_TRANSITIONS)
