"""Virtual infrastructure managers: where app instances actually run.

``docker`` runs containers on the local Docker engine; ``netns`` runs the echo
binary as a plain process in its own network namespace (machines without
Docker). Both return the same :class:`~meo.vim.base.Instance` shape.
"""

from __future__ import annotations

from meo.vim.base import Instance, Resources, VimDriver


def make_vim(
    kind: str,
    system_id: str,
    *,
    installation: str = "",
    bin_dir: str | None = None,
    meta_dir: str | None = None,
) -> VimDriver:
    """The VIM driver named ``kind`` for MEC system ``system_id``, scoped to
    the MEO ``installation``."""
    if kind == "docker":
        from meo.vim.docker import DockerVim

        return DockerVim(system_id, installation=installation)
    if kind == "netns":
        from meo.vim.netns import NetnsVim

        return NetnsVim(system_id, installation=installation, bin_dir=bin_dir, meta_dir=meta_dir)
    raise ValueError(f"unknown vim {kind!r}; expected 'docker' or 'netns'")


__all__ = ["Instance", "Resources", "VimDriver", "make_vim"]
