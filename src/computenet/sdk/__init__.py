"""Python SDK: `computenet.Client(url, token)` over the user API, sharing the API's schemas."""

from computenet.sdk.client import Client
from computenet.sdk.config import ClientConfig, config_path, load_config, resolve, save_config
from computenet.sdk.specfile import load_job_file, parse_job_spec

__all__ = [
    "Client",
    "ClientConfig",
    "config_path",
    "load_config",
    "load_job_file",
    "parse_job_spec",
    "resolve",
    "save_config",
]
