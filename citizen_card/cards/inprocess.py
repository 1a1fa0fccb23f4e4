"""The station flow run in process against a virtual card: for demo data, tests and benchmarks.

A real station runs the same steps over HTTP (``python -m card_reader issue``); this skips
the network, not the card: every step still goes through the card's APDUs.
"""

from __future__ import annotations

from pathlib import Path

from card_reader.card import CitizenCardClient
from card_reader.protocol import public_key_to_point
from card_reader.virtual import VirtualCard
from card_reader.virtual import VirtualReader
from citizen_card.audit.actions import Actor
from citizen_card.cards import actions


def issue_virtual_card(
    citizen_id: int,
    *,
    actor: Actor,
    pin: str,
    puk: str,
    path: Path | None = None,
    replacement: bool = False,
) -> tuple[CitizenCardClient, str]:
    """Issue a virtual card (saved to ``path`` if given); return it in a reader, and its number."""
    request = actions.request_issuance(
        citizen_id, actor=actor, station="in-process", replacement=replacement
    )
    card = CitizenCardClient(VirtualReader(VirtualCard.create(path, overwrite=True)))
    card.select()
    data = actions.personalize(
        request.id, public_key_to_point(card.generate_key_pair()), actor=actor
    )
    card.write_data(
        card_number=data.card_number,
        holder_name=data.holder_name,
        citizen_ref=data.citizen_ref,
        valid_from=data.valid_from,
        valid_until=data.valid_until,
        card_certificate=data.card_certificate,
        issuer_certificate=data.issuer_certificate,
    )
    card.set_pin_puk(pin, puk)
    card.lock()
    actions.complete_issuance(request.id, actor=actor)
    return card, data.card_number
