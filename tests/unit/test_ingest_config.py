"""The ingest configuration (pipeline/core/mta/ingest.yaml + --config): what it decides for a
message, and the one-line errors of a file it cannot use."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.core.mta import mapping


def test_account_is_the_sasl_login_else_the_sender_domain_else_the_client_network_else_the_default(
        tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "account:\n"
        "  sender_domains: {acme.example: acme, shop.acme.example: shop}\n"
        "  client_networks: {'192.0.2.0/24': net24, '192.0.2.128/25': net25, '2001:db8::/32': v6}\n"
        "  default: nobody\n")
    cfg = mapping.load(tmp_path / "c.yaml")
    assert cfg.account("alice", "x@acme.example", "192.0.2.1") == "alice"
    assert cfg.account(None, "x@Mail.Shop.ACME.example", None) == "shop"  # the nearest parent domain
    assert cfg.account(None, "x@other.example", "192.0.2.200") == "net25"  # the longest prefix
    assert cfg.account(None, None, "192.0.2.7") == "net24"
    assert cfg.account(None, None, "2001:db8::1") == "v6"
    assert cfg.account(None, "", "not an address") == "nobody"
    assert mapping.load(None).account(None, "x@acme.example", None) == "unknown"  # shipped: nothing mapped


def test_class_and_priority_from_the_logged_header_values() -> None:
    cfg = mapping.load(None)
    assert [cfg.message_class(v) for v in (None, "campaign", " BULK ", "Transactional", "weird")] == \
        ["transactional", "campaign", "campaign", "transactional", "transactional"]
    assert [cfg.low_priority(v) for v in (None, "low", "Bulk", "high")] == [False, True, True, False]
    assert (cfg.class_header, cfg.priority_header) == ("x-mailsla-class", "x-mailsla-priority")


@pytest.mark.parametrize("text,message", [
    ("message_class: {values: {bulk: marketing}}", "message_class.values.bulk: must be one of"),
    ("message_class: {default: bulk}", "message_class.default"),
    ("account: {client_networks: {'300.1.2.3': x}}", "account.client_networks: not an address"),
    ("postfix: {delays_wait: soon}", "postfix.delays_wait: expected a duration"),
    ("timezone: Nowhere/Town", "timezone: unknown time zone"),
    ("[1, 2]", "expected a mapping at the top level"),
    ("account: {default: {a: b}}", "account.default: expected a non-empty string"),
    (": :", "not valid YAML"),
])
def test_a_configuration_it_cannot_use_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "c.yaml").write_text(text + "\n")
    with pytest.raises(mapping.MappingError, match=message.replace("(", r"\(")):
        mapping.load(tmp_path / "c.yaml")


def test_the_shipped_examples_load() -> None:
    examples = Path(mapping.__file__).parent / "examples"
    found = sorted(examples.glob("*.yaml"))
    assert [p.name for p in found] == ["exim.yaml", "postfix.yaml"]
    for p in found:
        mapping.load(p)


def test_the_test_mtas_run_the_mta_side_settings_the_examples_give() -> None:
    """The private Postfix and Exim of the integration tests use what the examples tell an
    administrator to set, so the tests check what the README promises."""
    from pipeline.ops import eximlab, postfixlab

    examples = Path(mapping.__file__).parent / "examples"
    postfix, exim = (examples / "postfix.yaml").read_text(), (examples / "exim.yaml").read_text()
    assert f"#   {postfixlab.EOD}\n" in postfix
    for rule in ("/^X-Mailsla-Class:/ INFO", "/^X-Mailsla-Priority:/ INFO"):
        assert f"#   {rule}\n" in postfix and f"{rule}\n" in postfixlab.HEADER_CHECKS
    lab = eximlab.CONFIG.replace("{{", "{").replace("}}", "}")
    for setting in ("+millisec +deliver_time", "log_timezone = true",
                    "warn condition = ${if def:h_X-Mailsla-Class:}",
                    "logwrite = header X-Mailsla-Class: $h_X-Mailsla-Class:",
                    "logwrite = header X-Mailsla-Priority: $h_X-Mailsla-Priority:"):
        assert setting in exim and setting in lab, setting
