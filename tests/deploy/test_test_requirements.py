"""What `make test` needs, said once for a person and once for CI: every Debian package .ci/run
installs is named on the README's Requirements line, so a fresh machine set up from the README runs
the same tests CI runs."""

from __future__ import annotations

import re

from tests.conftest import PROJECT_ROOT


def ci_packages() -> set[str]:
    script = (PROJECT_ROOT / ".ci" / "run").read_text()
    return set(re.findall(r"missing\+=\(([\w.+-]+)\)", script))


def test_the_readme_names_every_package_ci_installs():
    readme = (PROJECT_ROOT / "README.md").read_text()
    requirements = readme[readme.index("Requirements:"):].split("\n\n", 1)[0]
    packages = ci_packages()
    assert {"postgresql-15", "redis-server", "chromium", "unzip", "libossp-uuid16"} <= packages
    assert sorted(name for name in packages if name not in requirements) == []
