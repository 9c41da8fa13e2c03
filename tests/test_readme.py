"""The README stays true: every OBS setting documented, the two commands in place."""

from pathlib import Path

from partialstyle.obs.settings import SETTINGS

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_every_obs_setting_is_documented():
    missing = [s.key for s in SETTINGS if f"`{s.key}`" not in README]
    assert not missing, f"README lacks OBS settings {missing}"


def test_ci_runs_the_readme_test_command():
    assert "bash install/test.sh" in README
    assert "bash install/test.sh" in (REPO / ".ci" / "run").read_text()


def test_readme_pictures_exist_and_are_small():
    for line in README.splitlines():
        if line.startswith("![") and "](" in line:
            path = REPO / line.split("](")[1].split(")")[0]
            assert path.is_file(), path
            assert path.stat().st_size < 300_000, path


def test_the_settings_table_says_what_the_dialog_says():
    """Each row carries the setting's label and help text, as the dialog shows them."""
    rows = {line.split("`")[1]: line for line in README.splitlines() if line.startswith("| `")}
    for setting in SETTINGS:
        assert f"**{setting.label}**: {setting.help}" in rows[setting.key], setting.key
