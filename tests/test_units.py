"""One grammar for counts and durations, whichever command takes them."""

from __future__ import annotations

import pytest

from pileablate.data import config as prepare_config
from pileablate.errors import UserError
from pileablate.train import config as train_config
from pileablate.units import parse_count, parse_duration


@pytest.mark.parametrize("text, count", [
    ("2000", 2000), ("250k", 250_000), ("250K", 250_000), ("1.5M", 1_500_000), ("5m", 5_000_000),
    ("2G", 2 * 10**9), ("1.5g", 1_500_000_000), ("1.5B", 1_500_000_000), ("1T", 10**12),
    ("1_000_000", 1_000_000), ("1,000", 1000), ("1e6", 1_000_000), (".5k", 500), ("2.k", 2000), (" 7 ", 7),
])
def test_counts_take_every_suffix_and_separator(text, count):
    assert parse_count(text, "--x") == count


@pytest.mark.parametrize("text", ["", "ten", "1.5", "0.0005k", "1.0005k", "-3", "3x", "k", "1e", "inf", "nan", "1e999999999"])
def test_bad_counts_are_one_line_errors_naming_the_option(text):
    with pytest.raises(UserError) as err:
        parse_count(text, "--max-tokens")
    assert "\n" not in str(err.value) and "--max-tokens" in str(err.value)


def test_zero_and_no_limit_only_where_allowed():
    with pytest.raises(UserError, match="1 or more"):
        parse_count("0", "--max-tokens")
    with pytest.raises(UserError):
        parse_count("all", "--max-tokens")
    assert parse_count("0", "--rows", minimum=0) == 0
    assert [parse_count(t, "--rows", minimum=0, allow_all=True) for t in ("all", "None", "", None)] == [None] * 4


@pytest.mark.parametrize("text", ["1.5G", "2B", "250_000", "3k"])
def test_prepare_and_train_read_a_count_the_same_way(text):
    from pileablate.commands.train import train_config_from_args

    assert prepare_config.parse_count(text, "--tokens") == train_config_from_args(["--max-tokens", text]).max_tokens


def test_prepare_counts_allow_zero_and_all_train_counts_do_not():
    from pileablate.commands.train import train_config_from_args

    assert prepare_config.parse_count("0", "--val-rows") == 0 and prepare_config.parse_count("all", "--val-rows") is None
    with pytest.raises(UserError):
        train_config_from_args(["--max-tokens", "0"])


def test_train_budget_option_takes_a_g_suffix():
    from pileablate.commands.train import train_config_from_args

    assert train_config_from_args(["--max-tokens", "1.5G"]).max_tokens == 1_500_000_000


def test_durations_live_in_units_and_train_config_alike():
    assert parse_duration("1h30m") == train_config.parse_duration("1h30m") == 5400
    with pytest.raises(UserError, match="--checkpoint-every"):
        parse_duration("soon", "--checkpoint-every")
