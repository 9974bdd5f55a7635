"""Pure units: revert decoding and mapping, ServiceView, log filters."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from eth_abi import encode
from eth_utils import keccak

from mecfed.chain.events import log_filter
from mecfed.chain.federation import STATUS_BY_ERROR, ServiceState, ServiceView, auction_closed
from mecfed.chain.revert import ContractRevert, ErrorDecoder, revert_class_for, revert_data_of
from mecfed.errors import FailedPrecondition, InvalidArgument, MecfedError, PermissionDenied

ABI: list[dict[str, Any]] = [
    {
        "type": "error",
        "name": "NotMember",
        "inputs": [{"name": "who", "type": "address"}, {"name": "id", "type": "bytes32"}],
    },
    {"type": "error", "name": "WrongState", "inputs": [{"name": "", "type": "uint8"}]},
]


def _data(signature: str, types: list[str], values: list[Any]) -> bytes:
    return keccak(text=signature)[:4] + encode(types, values)


def test_custom_error_decoding_and_mapping() -> None:
    decoder = ErrorDecoder(ABI)
    who = "0x" + "ab" * 20
    data = _data("NotMember(address,bytes32)", ["address", "bytes32"], [who, b"\x01" * 32])
    name, args, message = decoder.decode(data)
    assert name == "NotMember" and args["id"] == b"\x01" * 32
    assert args["who"] == "0x" + "Ab" * 20 or args["who"].lower() == who
    assert message.startswith("NotMember(who=0x")
    mapping = {"NotMember": PermissionDenied, "WrongState": FailedPrecondition}
    err = decoder.to_exception(data, mapping.get, context="join")
    assert isinstance(err, PermissionDenied) and isinstance(err, ContractRevert)
    assert err.http_status == 403 and err.message.startswith("join: NotMember")
    assert revert_class_for(PermissionDenied) is type(err)  # cached class
    assert not hasattr(err, "code")  # no gRPC in the domain


def test_unnamed_arguments_are_positional() -> None:
    name, args, _ = ErrorDecoder(ABI).decode(_data("WrongState(uint8)", ["uint8"], [3]))
    assert (name, args) == ("WrongState", {"0": 3})


def test_standard_errors_and_unknown_data() -> None:
    decoder = ErrorDecoder(ABI)
    reason = _data("Error(string)", ["string"], ["no"])
    assert decoder.decode(reason)[:2] == ("Error", {"reason": "no"})
    panic = _data("Panic(uint256)", ["uint256"], [0x11])
    assert decoder.decode(panic)[0] == "Panic" and "overflow" in decoder.decode(panic)[2]
    assert decoder.decode(b"")[0] == "Unknown"
    name, _, message = decoder.decode(bytes.fromhex("deadbeef"))
    assert name == "Unknown" and "deadbeef" in message
    err = decoder.to_exception(b"", fallback_message="execution reverted")
    assert isinstance(err, FailedPrecondition) and err.message == "execution reverted"


def test_unmapped_reverts_are_failed_preconditions() -> None:
    cls = revert_class_for(None)
    assert issubclass(cls, ContractRevert) and issubclass(cls, FailedPrecondition)
    err = cls("Whatever", {"a": 1}, "m")
    assert err.revert_args == (1,) and err.error_args == {"a": 1}
    # A domain class whose __init__ takes more than a message still works.
    err2 = revert_class_for(InvalidArgument)("X", {}, "bad")
    assert isinstance(err2, InvalidArgument) and err2.violations == ()


def test_revert_data_of_node_flavours() -> None:
    class E(Exception):
        def __init__(self, data: Any) -> None:
            self.data = data

    assert revert_data_of(E("0x0102")) == b"\x01\x02"
    assert revert_data_of(E({"data": "0x03"})) == b"\x03"
    assert revert_data_of(E(None)) is None
    assert revert_data_of(E("not hex")) is None


def test_status_table_covers_the_contract_errors() -> None:
    from mecfed.chain.artifact import federation_abi

    names = {e["name"] for e in federation_abi() if e["type"] == "error"}
    assert names == set(STATUS_BY_ERROR)
    assert all(issubclass(c, MecfedError) for c in STATUS_BY_ERROR.values())


def test_auction_closed() -> None:
    assert auction_closed(revert_class_for(None)("WrongState", {}, ""))
    assert auction_closed(revert_class_for(None)("BiddingClosed", {}, ""))
    assert not auction_closed(revert_class_for(None)("NotMember", {}, ""))
    assert not auction_closed(RuntimeError("WrongState"))


def test_service_view_from_named_output_keeps_new_fields() -> None:
    fields = (
        "consumer maxPrice k bidCount state deadline confirmDeadline winner bestPrice round "
        "confirmWindow biddingWindow somethingNew"
    )
    Named = namedtuple("Named", fields)  # type: ignore[misc]
    addr = "0x" + "ab" * 20
    view = ServiceView.of(Named(addr, 10, 2, 1, 2, 100, 160, addr, 9, 0, 60, 30, 7))
    assert view.state is ServiceState.AWARDED and view.max_price == 10 and view.bid_count == 1
    assert view.confirm_deadline == 160 and view.bidding_window == 30 and view.quorum == 0
    assert view.consumer == view.winner and view.consumer.lower() == addr
    assert view.extra == {"something_new": 7}


def test_log_filter_normalises() -> None:
    addr = "0x" + "ab" * 20
    query = log_filter(addr, [b"\x01" * 32, None, ["0x" + "02" * 32, b"\x03" * 32], None])
    assert query["address"].lower() == addr
    assert query["topics"] == ["0x" + "01" * 32, None, ["0x" + "02" * 32, "0x" + "03" * 32]]
    assert log_filter(None, [None, None]) == {}
