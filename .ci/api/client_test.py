"""A client generated from the server's OpenAPI document (openapi-python-client), used as a
newcomer would: log in, list vouchers, place an order, post signed usage as the provider, and
read it back.

Run by .ci/api-contract.sh with the generated package `suanli_client` on PYTHONPATH:
    python client_test.py BASE_URL NAME PASSWORD
The usage signature is made here from docs/signing.md, independently of the Rust wire crate.
"""
import struct
import sys
import time
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from suanli_client import AuthenticatedClient, Client
from suanli_client.api.login import log_in
from suanli_client.api.orders import list_order_usage, place_order, show_order, start_order
from suanli_client.api.providers import post_usage, set_provider_key
from suanli_client.api.requests import show_request, submit_request
from suanli_client.api.rounds import run_round
from suanli_client.api.tokens import issue_token
from suanli_client.api.vouchers import list_vouchers
from suanli_client.models import (
    Error,
    IssuedToken,
    KeyJson,
    ListVouchersState,
    LoginAnswer,
    LoginJson,
    Order,
    OrderJson,
    OrderRequest,
    Purpose,
    RequestJson,
    RoundReport,
    TokenJson,
    UsageAnswer,
    UsageBatch,
    UsageRecord,
)


def number(id_text: str) -> int:
    return int(id_text.split("-")[1])


def usage_signing_bytes(provider: str, records: list) -> bytes:
    """docs/signing.md: a usage batch's bytes, all integers little-endian."""
    out = b"suanli-usage-v1\x00" + struct.pack("<QQ", number(provider), len(records))
    for r in records:
        rid = r["id"].encode()
        out += struct.pack("<Q", len(rid)) + rid
        out += struct.pack("<Qqqq", number(r["order"]), r["gpu_seconds"], r["start_s"], r["end_s"])
    return out


def instant(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def main(base_url: str, name: str, password: str) -> None:
    answer = log_in.sync(client=Client(base_url=base_url), body=LoginJson(name=name, password=password))
    assert isinstance(answer, LoginAnswer), f"log in: {answer}"
    admin = AuthenticatedClient(base_url=base_url, token=answer.token, raise_on_unexpected_status=True)
    print(f"logged in as {answer.role} ({answer.token_id})")

    page = list_vouchers.sync(client=admin, limit=500, state=ListVouchersState.ACTIVE)
    assert not isinstance(page, Error) and page is not None, f"list vouchers: {page}"
    assert page.total > 0 and page.items, "the demo database has active vouchers"
    print(f"{page.total} active vouchers; the first {len(page.items)} read")

    order = None
    for voucher in page.items:
        if voucher.available_fen < 100_00:
            continue
        placed = place_order.sync(
            client=admin,
            body=OrderJson(enterprise=voucher.enterprise, voucher=voucher.id, gpus=4, hours=1, purpose=Purpose.TRAINING),
        )
        if isinstance(placed, Order):
            order = placed
            break
    assert order is not None, "no active voucher could place a four-GPU, one-hour order"
    print(f"placed {order.id} on {order.pool} of {order.provider}: {order.hold_fen} fen held on the voucher")

    # The same order through the scheduling loop: it waits, then a round places it.
    waiting = submit_request.sync(
        client=admin,
        body=RequestJson(enterprise=order.enterprise, voucher=order.voucher, gpus=1, hours=1, purpose=Purpose.TRAINING, wait_s=60),
    )
    assert isinstance(waiting, OrderRequest) and waiting.state.value == "waiting", f"submit request: {waiting}"
    report = run_round.sync(client=admin)
    assert isinstance(report, RoundReport) and report.round_ >= 1, f"run round: {report}"
    decided = show_request.sync(waiting.id, client=admin)
    assert isinstance(decided, OrderRequest) and decided.state.value == "placed", f"the request: {decided}"
    print(f"request {decided.id} placed by round {report.round_} as {decided.decision.order} (gap {report.gap_bp} bp)")

    started = start_order.sync(order.id, client=admin)
    assert isinstance(started, Order) and started.started_at, f"start: {started}"

    # The provider: a machine token and a signing key of its own, registered by the admin.
    issued = issue_token.sync(client=admin, body=TokenJson(role=f"provider:{order.provider}"))
    assert isinstance(issued, IssuedToken), f"issue token: {issued}"
    key = Ed25519PrivateKey.generate()
    public_hex = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    keyed = set_provider_key.sync(order.provider, client=admin, body=KeyJson(public_key_hex=public_hex))
    assert not isinstance(keyed, Error), f"set key: {keyed}"
    provider = AuthenticatedClient(base_url=base_url, token=issued.token, raise_on_unexpected_status=True)

    time.sleep(11)  # the period must have ended by the server's clock
    start_s = int(started.started_at.timestamp())
    record = {"id": f"contract-{order.id}", "order": order.id, "gpu_seconds": 40, "start_s": start_s, "end_s": start_s + 10}
    signature = key.sign(usage_signing_bytes(order.provider, [record])).hex()
    batch = UsageBatch(
        records=[
            UsageRecord(
                id=record["id"],
                order=record["order"],
                gpu_seconds=record["gpu_seconds"],
                period_start=instant(record["start_s"]),
                period_end=instant(record["end_s"]),
            )
        ]
    )
    for expected in ("ok", "exists"):
        answer = post_usage.sync(order.provider, client=provider, body=batch, suanli_signature=signature)
        assert isinstance(answer, UsageAnswer), f"post usage: {answer}"
        result = answer.results[0]
        assert result.status == expected, f"usage answered {result.status}: {result.code} {result.message}"
        assert result.cost_fen > 0 and result.cost_fen == result.voucher_part_fen + result.enterprise_part_fen, result
        print(f"usage {result.status}: cost {result.cost_fen} fen = voucher {result.voucher_part_fen} + enterprise {result.enterprise_part_fen}")

    listed = list_order_usage.sync(order.id, client=provider)
    assert listed.total == 1 and listed.items[0].id == record["id"], f"the order's usage: {listed}"
    assert int(listed.items[0].period_start.timestamp()) == start_s, listed.items[0]

    seen = show_order.sync(order.id, client=admin)
    assert isinstance(seen, Order) and seen.gpu_seconds == 40, f"the order's usage: {seen}"
    print("the generated client works: logged in, listed, placed, signed and sent usage")


if __name__ == "__main__":
    main(*sys.argv[1:4])
