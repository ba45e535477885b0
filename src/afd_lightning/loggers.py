"""Logger factories that never hang or fail for lack of an account or a network."""
from __future__ import annotations

import netrc
import os
from pathlib import Path

from pytorch_lightning.loggers import WandbLogger

from afd_lightning.errors import ConfigError

MODES = ("auto", "online", "offline", "disabled")


def _has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in hosts)


def resolve_wandb_mode(mode: str = "auto") -> str:
    """``auto`` -> WANDB_MODE if set, else online with credentials, else offline."""
    if mode not in MODES:
        raise ConfigError(f"logger.wandb.mode={mode!r} is not one of {list(MODES)}")
    if mode != "auto":
        return mode
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode in ("online", "offline", "disabled", "dryrun"):
        return "offline" if env_mode == "dryrun" else env_mode
    return "online" if _has_wandb_credentials() else "offline"


def wandb_logger(project: str, save_dir: str, mode: str = "auto", name: str | None = None, **kwargs) -> WandbLogger:
    """A :class:`WandbLogger`; offline (``wandb sync`` later) unless W&B credentials are configured."""
    resolved = resolve_wandb_mode(mode)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_SILENT", "true")
    return WandbLogger(
        project=project, name=name, save_dir=save_dir, offline=resolved == "offline", mode=resolved, **kwargs
    )
