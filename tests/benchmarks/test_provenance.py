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


def test_the_suites_own_outputs_do_not_make_the_commit_dirty(tmp_path, monkeypatch):
    """A run appends to results/ and refreshes the README's report block; only code changes are '+dirty'."""
    import subprocess

    from benchmarks import provenance

    monkeypatch.delenv("SPARSE_REPRO_COMMIT", raising=False)
    repo = tmp_path / "repo"
    (repo / "results").mkdir(parents=True)
    for name in ("README.md", "results/runs.csv", "code.py"):
        (repo / name).write_text("v1\n")

    def git(*args):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "files")
    monkeypatch.setattr(provenance, "REPO_ROOT", repo)
    (repo / "results" / "runs.csv").write_text("v2\n")
    (repo / "README.md").write_text("v2\n")
    assert not provenance.git_commit().endswith("+dirty")
    (repo / "code.py").write_text("v2\n")
    assert provenance.git_commit().endswith("+dirty")


def test_provenance_line_is_what_the_report_reads(monkeypatch):
    """profile_kernels and tune_tiles print it first; the report takes the card from before the first ';'."""
    from benchmarks.provenance import provenance_line

    monkeypatch.setenv("SPARSE_REPRO_COMMIT", "abcdef123456")
    line = provenance_line()
    assert line.startswith("# gpu: ")
    card, torch_part, triton_part, commit_part, _date = line[len("# gpu: ") :].split("; ")
    assert card and torch_part.startswith("torch ") and triton_part.startswith("triton ")
    assert commit_part == "commit abcdef123456"
