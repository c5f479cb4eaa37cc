"""QNN toolchains: one isolated Python environment per QNN SDK version.

Each onnxruntime-qnn release bundles one QNN SDK (offline HTP compiler + x86 HTP emulator)
and one process can load only one of them, so compiling with several QNN versions needs
several environments. A toolchain is such an environment under `toolchains_root()`,
holding only onnxruntime, onnxruntime-qnn, numpy, onnx and pydantic (never torch); the
main environment's own onnxruntime-qnn is the default toolchain and needs no install.

- `registry`: the known versions and their onnxruntime pairs; parsing `--qnn` lists.
- `state`: where toolchains live and what state each one is in.
- `worker`: how a toolchain's interpreter runs `swiftformer_qnn.htp.worker`.
- `installer`: installing (verified before it is marked ready) and removing.
"""

from .installer import (
    IndexConfig,
    Installer,
    ProgressCallback,
    ProgressEvent,
    ensure_toolchains,
    find_uv,
    install_toolchain,
    install_toolchains,
    parse_pip_config_list,
    remove_toolchain,
    unfetched_packages,
)
from .registry import (
    COMMON_REQUIREMENTS,
    KNOWN_REFUSALS,
    TOOLCHAINS,
    QnnToolchainSpec,
    get_toolchain_spec,
    known_versions,
    main_environment_spec,
    parse_qnn_versions,
    parse_version,
    same_release,
    short_version,
    split_versions,
    version_key,
)
from .state import (
    CACHE_DIR,
    ENV_DIR,
    MARKER_KIND,
    MARKER_NAME,
    TOOLCHAINS_ENV,
    ToolchainMarker,
    ToolchainState,
    ToolchainStatus,
    env_python,
    inspect_toolchain,
    list_toolchains,
    reinstall_hint,
    resolve_toolchain,
    resolve_toolchains,
    toolchain_dir,
    toolchain_in_use,
    toolchains_root,
    verify_toolchain,
)
from .worker import PYCACHE_DIR, package_shim, probe_problems, probe_python, worker_command, worker_env

__all__ = [
    "CACHE_DIR",
    "COMMON_REQUIREMENTS",
    "ENV_DIR",
    "KNOWN_REFUSALS",
    "MARKER_KIND",
    "MARKER_NAME",
    "TOOLCHAINS",
    "TOOLCHAINS_ENV",
    "IndexConfig",
    "Installer",
    "ProgressCallback",
    "ProgressEvent",
    "QnnToolchainSpec",
    "ToolchainMarker",
    "ToolchainState",
    "ToolchainStatus",
    "ensure_toolchains",
    "env_python",
    "find_uv",
    "get_toolchain_spec",
    "inspect_toolchain",
    "install_toolchain",
    "install_toolchains",
    "known_versions",
    "list_toolchains",
    "main_environment_spec",
    "PYCACHE_DIR",
    "package_shim",
    "parse_pip_config_list",
    "parse_qnn_versions",
    "parse_version",
    "probe_problems",
    "probe_python",
    "reinstall_hint",
    "remove_toolchain",
    "resolve_toolchain",
    "resolve_toolchains",
    "same_release",
    "short_version",
    "split_versions",
    "toolchain_dir",
    "toolchain_in_use",
    "toolchains_root",
    "unfetched_packages",
    "verify_toolchain",
    "version_key",
    "worker_command",
    "worker_env",
]
