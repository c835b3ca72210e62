"""dkan-sweep: DKAN few-shot defect detection (Sun et al., arXiv 2209.00519) on torchvision."""

__version__ = "0.1.0"


def code_version() -> str:
    """The package version plus, in a git checkout, ``git describe --always --dirty``."""
    import subprocess
    from pathlib import Path

    try:
        rev = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        if rev.returncode == 0:
            return f"{__version__}+{rev.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__
