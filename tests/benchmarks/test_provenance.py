from benchmarks.cli import main
from benchmarks.provenance import environment_report, provenance


def test_provenance_has_the_recorded_fields():
    fields = provenance()
    for key in ("date", "commit", "gpu", "torch", "triton", "lightning", "python"):
        assert fields[key], key


def test_environment_report_names_kernel_mode(capsys):
    assert "kernels" in environment_report()
    assert main(["env"]) == 0
    assert "torch" in capsys.readouterr().out


def test_unknown_command_is_an_error(capsys):
    assert main(["no-such-command"]) == 2
    assert "valid" in capsys.readouterr().err


def test_a_declared_commit_wins_over_a_stale_git(monkeypatch):
    """The GPU machines receive a copied tree whose .git may name an older commit (it did on 2026-11-28)."""
    from benchmarks.provenance import git_commit

    monkeypatch.setenv("SPARSE_REPRO_COMMIT", "c5b1fbde90fb")
    assert git_commit() == "c5b1fbde90fb"
    monkeypatch.delenv("SPARSE_REPRO_COMMIT")
    assert git_commit() != "c5b1fbde90fb"
