"""The README's first command, ``devmig tour``, in a fresh clone of HEAD: every step ✓, nothing left behind.

The tour runs as a newcomer would run it — from a clone, in its own process
group (session), with no terminal (pipes) — and is judged from outside: its
exit status, its ✓/✗ lines, and what it left: no process naming its state
directory, none of the pids it printed alive, none of the ports it printed
still listening.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from local_fleet_checks import (
    alive,
    assert_nothing_left,
    bound,
    processes_naming,
    read_state,
    wait_until,
)

REPO = Path(__file__).resolve().parents[2]
TOUR_TIMEOUT_S = 900.0
"""Generous: set-up (five Python processes) on a loaded 2-core machine is slow; the tour itself
checks its own two-minute budget and fails when it is exceeded."""
STEPS = 8


def readme_commands(readme: Path) -> list[str]:
    """The README's ``    $ `` lines, in order (what .ci/run runs too)."""
    return [line[6:] for line in readme.read_text().splitlines() if line.startswith("    $ ")]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("git") is None,
                                reason="needs Linux (PR_SET_PDEATHSIG) and git")


@pytest.mark.slow
def test_tour_in_a_fresh_clone_passes_and_leaves_nothing(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True, timeout=120)
    scratch = tmp_path / "tmp"  # the tour's state directory is a temporary directory: here
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DEVMIG_") and k not in ("VIRTUAL_ENV", "PYTHONPATH", "FORCE_COLOR",
                                                         "UV_PROJECT_ENVIRONMENT", "UV_COMPILE_BYTECODE")}
    # a newcomer's shell: the system python3 first, not this test run's virtualenv
    venv_bin = str(Path(sys.prefix) / "bin")
    path = [d for d in env.get("PATH", "").split(os.pathsep) if d and d != venv_bin]
    env.update(TMPDIR=str(scratch), TERM="dumb", PATH=os.pathsep.join(path))
    first = readme_commands(clone / "README.md")[0]
    assert first.endswith("devmig tour"), first
    tour = subprocess.Popen(["bash", "-c", first], cwd=clone, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = tour.communicate(timeout=TOUR_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(tour.pid, signal.SIGKILL)
        out, err = tour.communicate()
        raise AssertionError(f"the tour did not finish in {TOUR_TIMEOUT_S:.0f} s:\n{out}\n{err}") from None
    transcript = f"{out}\n--- stderr ---\n{err}"

    assert tour.returncode == 0, transcript
    # it ran from the clone's own environment, not from this working tree
    assert str(clone) in subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c",
                                         "import devmig; print(devmig.__file__)"], env=env,
                                        cwd=clone, capture_output=True, text=True, check=True).stdout
    assert "✗" not in out, transcript
    assert "Traceback" not in transcript
    assert "\x1b[" not in out, "no terminal: plain lines, no escape sequences"
    step_ends = [line for line in out.splitlines() if re.match(r"^[✓✗] .+ \(\d+\.\d\d s\)$", line)]
    assert len(step_ends) == STEPS and all(line.startswith("✓") for line in step_ends), transcript
    checks = [line for line in out.splitlines() if line.startswith("  ✓ ")]
    assert len(checks) >= 30, transcript  # every step made several self-checks
    for title in ("query mechanism", "placement", "baseline", "upgrade migration", "rollback migration",
                  "refused before anything moved", "drain", "Summary"):
        assert any(title in line for line in step_ends), title
    assert "tour passed" in out

    # nothing left behind: the pids and ports it printed, and any process naming its state directory
    listening = re.findall(r"(https://127\.0\.0\.1:\d+)\s+pid (\d+)", out)  # TLS by default
    assert len(listening) == 5, transcript  # the manager and four agents
    pids = [int(pid) for _, pid in listening]
    streams = re.findall(r"streams (127\.0\.0\.1:\d+)", out)
    assert len(streams) == 4, transcript
    addresses = [(url.rpartition("//")[2]).rpartition(":") for url, _ in listening]
    ports = [(host, int(port)) for host, _, port in addresses]
    ports += [(s.rpartition(":")[0], int(s.rpartition(":")[2])) for s in streams]
    assert [p for p in pids if alive(p)] == []
    assert processes_naming(str(scratch)) == []
    assert bound(ports) == []
    left = [p.name for p in scratch.iterdir() if not p.name.startswith("uv-")]  # uv keeps its lock files
    assert left == [], "the tour removes its temporary state directory"


@pytest.mark.slow
def test_ctrl_c_during_the_tour_tears_the_fleet_down(tmp_path: Path) -> None:
    state_dir = tmp_path / "tour"
    tour = subprocess.Popen([sys.executable, "-m", "devmig", "tour", "--json", "--state-dir", str(state_dir)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_until(lambda: read_state(state_dir) is not None or tour.poll() is not None, 300, "the tour's fleet")
        state = read_state(state_dir)
        assert state is not None, tour.communicate()
        tour.send_signal(signal.SIGINT)
        out, err = tour.communicate(timeout=120)
    finally:
        if tour.poll() is None:
            os.killpg(tour.pid, signal.SIGKILL)
            tour.communicate()
    assert tour.returncode == 1, out + err
    report = json.loads(out)
    assert report["ok"] is False and report["interrupted"] is True
    assert report["teardown"]["alive"] == [] and report["teardown"]["ports_busy"] == []
    assert_nothing_left(state_dir, state)
    assert read_state(state_dir) is None
