"""`warmwhisk_scaler.settings.load_settings`: secrets from files, one way each, and every number
checked against its range, with messages that name the flag or file and never a secret."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from warmwhisk_scaler.settings import ScalerSettings, load_settings

URL = "redis://:pa55word@127.0.0.1:6379/0"
TOKEN = "t0ken-value"


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def files(tmp_path: Path, url: str = URL, token: str = TOKEN) -> tuple[list[str], dict[str, str]]:
    """The documented command line: both secrets in files (each with the newline `echo` adds)."""
    url_file, token_file = write(tmp_path / "redis-url", f"{url}\n"), write(tmp_path / "token", f"{token}\n")
    return ["--redis-url-file", url_file, "--token-file", token_file], {}


def refused(argv: list[str], environ: dict[str, str], capsys: pytest.CaptureFixture[str]) -> str:
    """load_settings must exit with status 2 (argparse's usage error); its message."""
    with pytest.raises(SystemExit) as exit_info:
        load_settings(argv, environ)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_secrets_are_read_from_files_without_the_trailing_newline(tmp_path):
    argv, environ = files(tmp_path)
    settings = load_settings(argv, environ)
    assert (settings.redis_url, settings.host_redis_url, settings.token) == (URL, URL, TOKEN)

    host_url = "redis://:pa55word@172.17.0.1:6379/0"
    environ = {
        "WARMWHISK_REDIS_URL_FILE": write(tmp_path / "u", URL + "\r\n"),
        "WARMWHISK_SCALER_TOKEN_FILE": write(tmp_path / "t", TOKEN),
        "WARMWHISK_HOST_REDIS_URL_FILE": write(tmp_path / "h", host_url + "\n"),
    }
    settings = load_settings([], environ)
    assert (settings.redis_url, settings.host_redis_url, settings.token) == (URL, host_url, TOKEN)
    # The values themselves still work (flag or variable), for a quick local run.
    settings = load_settings(["--redis-url", URL], {"WARMWHISK_SCALER_TOKEN": TOKEN})
    assert (settings.redis_url, settings.token) == (URL, TOKEN)


@pytest.mark.parametrize(
    ("value", "file"),
    [
        ("--token", "--token-file"),
        ("WARMWHISK_SCALER_TOKEN", "--token-file"),
        ("--token", "WARMWHISK_SCALER_TOKEN_FILE"),
        ("--redis-url", "--redis-url-file"),
        ("WARMWHISK_HOST_REDIS_URL", "WARMWHISK_HOST_REDIS_URL_FILE"),
    ],
)
def test_a_secret_given_both_as_a_value_and_as_a_file_is_refused(tmp_path, capsys, value, file):
    environ = {
        "WARMWHISK_REDIS_URL_FILE": write(tmp_path / "redis-url", URL),
        "WARMWHISK_SCALER_TOKEN_FILE": write(tmp_path / "token", TOKEN),
    }
    secret = URL if "URL" in value.upper() else TOKEN
    argv: list[str] = []
    for name, text in ((value, secret), (file, write(tmp_path / "file", secret))):
        if name.startswith("--"):
            argv += [name, text]
        else:
            environ[name] = text
    message = refused(argv, environ, capsys)
    assert f"{value} and {file} are both given" in message and "not both" in message, message
    assert TOKEN not in message and "pa55word" not in message


def test_unreadable_empty_or_odd_secret_files_name_the_path_never_the_content(tmp_path, capsys):
    secret = "do-not-print-me"
    argv, _ = files(tmp_path)
    cases = {
        str(tmp_path / "missing"): "No such file or directory",
        write(tmp_path / "empty", "\n"): "is empty",
        write(tmp_path / "two", f"{secret}\n{secret}\n"): "more than one line",
        str(tmp_path): "Is a directory",
    }
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff" + secret.encode())
    cases[str(binary)] = "not UTF-8"
    large = tmp_path / "large"
    large.write_text(secret * 10000)
    cases[str(large)] = "larger than"
    if os.geteuid() != 0:  # root reads anything
        locked = Path(write(tmp_path / "locked", secret))
        locked.chmod(0)
        cases[str(locked)] = "Permission denied"
    for path, why in cases.items():
        message = refused(["--redis-url-file", argv[1], "--token-file", path], {}, capsys)
        assert f"--token-file: cannot read {path}" in message or f"--token-file: {path}" in message, message
        assert why in message and secret not in message, message


def test_the_redis_url_and_the_token_must_have_their_form_and_the_message_hides_them(tmp_path, capsys):
    argv, _ = files(tmp_path, url="http://:pa55word@127.0.0.1:6379/0")
    message = refused(argv, {}, capsys)
    assert "--redis-url-file: not a Redis URL" in message and "pa55word" not in message
    argv, _ = files(tmp_path, token="two words")
    message = refused(argv, {}, capsys)
    assert "printable ASCII without spaces" in message and "two words" not in message
    message = refused([], {}, capsys)
    assert "--redis-url-file (or WARMWHISK_REDIS_URL_FILE) is required" in message
    url_only = ["--redis-url-file", files(tmp_path)[0][1]]
    assert "--token-file (or WARMWHISK_SCALER_TOKEN_FILE) is required" in refused(url_only, {}, capsys)


def test_new_settings_are_read_from_flags_and_environment(tmp_path):
    argv, _ = files(tmp_path)
    defaults = load_settings(argv, {})
    assert defaults.max_hosts is None and defaults.insecure_no_auth is False
    assert (defaults.max_starts_per_tick, defaults.start_backoff_s, defaults.start_backoff_max_s) == (
        4,
        1.0,
        60.0,
    )
    assert defaults.credential_grace_s == 3600.0 and defaults.tick_s == 1.0
    environ = {
        "WARMWHISK_SCALER_MAX_HOSTS": "12",
        "WARMWHISK_SCALER_MAX_STARTS_PER_TICK": "2",
        "WARMWHISK_SCALER_START_BACKOFF_S": "0.5",
        "WARMWHISK_SCALER_START_BACKOFF_MAX_S": "30",
        "WARMWHISK_SCALER_CREDENTIAL_GRACE_S": "0",
        "WARMWHISK_SCALER_TICK_S": "0.25",
        "WARMWHISK_SCALER_WINDOW_S": "5",
    }
    settings = load_settings([*argv, "--insecure-no-auth"], environ)
    assert settings == ScalerSettings(
        redis_url=URL, host_redis_url=URL, token=TOKEN, max_hosts=12, max_starts_per_tick=2,
        start_backoff_s=0.5, start_backoff_max_s=30.0, credential_grace_s=0.0, tick_s=0.25,
        window_s=5.0, insecure_no_auth=True,
    )  # fmt: skip
    # A flag wins over its variable.
    assert load_settings([*argv, "--max-hosts", "3", "--tick", "2"], environ).max_hosts == 3


@pytest.mark.parametrize(
    ("name", "text", "rule"),
    [
        ("--max-hosts", "0", "whole number >= 1 and <= 1024"),
        ("--max-hosts", "1025", "whole number >= 1 and <= 1024"),
        ("--max-hosts", "2.5", "whole number"),
        ("--max-hosts", "1" * 400, "whole number"),  # too large for a float
        ("--max-hosts", "1" * 5000, "whole number"),  # too long for int()
        ("WARMWHISK_SCALER_MAX_HOSTS", "true", "whole number"),
        ("--tick", "0.01", "finite number >= 0.05"),
        ("--tick", "1e-300", "finite number >= 0.05"),
        ("--tick", "nan", "finite number"),
        ("WARMWHISK_SCALER_TICK_S", "inf", "finite number"),
        ("--heartbeat", "0.04", ">= 0.05"),
        ("--port", "70000", "<= 65535"),
        ("--host-memory", "-1", ">= 1"),
        ("WARMWHISK_SCALER_MAX_STARTS_PER_TICK", "0", ">= 1 and <= 64"),
        ("WARMWHISK_SCALER_MAX_STARTS_PER_TICK", "65", ">= 1 and <= 64"),
        ("WARMWHISK_SCALER_START_BACKOFF_S", "0", "> 0"),
        ("WARMWHISK_SCALER_START_BACKOFF_MAX_S", "-1", "> 0"),
        ("WARMWHISK_SCALER_CREDENTIAL_GRACE_S", "-1", ">= 0"),
        ("WARMWHISK_SCALER_WINDOW_S", "ten", "> 0"),
        ("WARMWHISK_HOST_MAX_CONCURRENT", "4096", "<= 1024"),
    ],
)
def test_numbers_out_of_their_range_stop_the_start_naming_the_flag_and_the_rule(
    tmp_path, capsys, name, text, rule
):
    argv, environ = files(tmp_path)
    if name.startswith("--"):
        argv += [name, text]
    else:
        environ[name] = text
    message = refused(argv, environ, capsys)
    assert f"{name}: must be a" in message and rule in message, message
    assert len(message) < 2000  # a 5000-digit value is cut short


def test_the_back_off_maximum_must_be_at_least_the_first_wait(tmp_path, capsys):
    argv, _ = files(tmp_path)
    environ = {"WARMWHISK_SCALER_START_BACKOFF_S": "10", "WARMWHISK_SCALER_START_BACKOFF_MAX_S": "5"}
    assert "must be at least WARMWHISK_SCALER_START_BACKOFF_S" in refused(argv, environ, capsys)


def test_hosts_bind_to_one_address_and_keep_secrets_where_told(tmp_path, capsys):
    argv, _ = files(tmp_path)
    defaults = load_settings(argv, {})
    assert (defaults.host_bind, defaults.host_secrets_dir) == ("127.0.0.1", "/var/lib/warmwhisk/host-secrets")
    environ = {"WARMWHISK_HOST_BIND": "10.0.0.30", "WARMWHISK_HOST_SECRETS_DIR": "/srv/ww/host-secrets"}
    settings = load_settings(argv, environ)
    assert (settings.host_bind, settings.host_secrets_dir) == ("10.0.0.30", "/srv/ww/host-secrets")
    assert load_settings([*argv, "--host-bind", "::1"], environ).host_bind == "::1"
    for wildcard in ("0.0.0.0", "::"):
        assert "listens on every interface" in refused([*argv, "--host-bind", wildcard], {}, capsys)
    assert "is not an IP address" in refused([*argv, "--host-bind", "ml0.internal"], {}, capsys)
