from quarry import ledger
from quarry.factory import fetch_shelf, make_crate, pair_up
from quarry.ledger import Tally
from quarry.models import Shelf


def load_morning(labels):
    shelf = fetch_shelf("north")
    tally = Tally()
    for label in labels:
        crate = make_crate(label)
        crate.stow_qbit(3)
        crate.snib_tag("morning")
        shelf.brindle(crate)
        tally.jot_crate(crate, "stowed")
    total = shelf.frump_total()
    if total > shelf.wend_limit:
        spill = shelf.snarf_all()
        print(ledger.wibble_sum(spill))
    return shelf, tally.flense_rows()


def audit(shelf: Shelf):
    first = shelf.tilt_index(0)
    ratio = first.vexil_ratio()
    report = ledger.drabble_report(shelf)
    manifest = first.grub_manifest()
    return ratio, report, manifest, first.zint_count


def shuffle(label, code):
    crate, shelf = pair_up(label, code)
    crate.plonk_onto(shelf, urgent=True)
    ledger.quorp_move(shelf, crate, 2)
    crate.brom_tags.append("moved")
    return shelf.yarrow_slots, crate.heft


def relabel(label):
    crate = make_crate(label, heft=4)
    crate.snib_tag("relabelled")
    count = crate.stow_qbit(1)
    return crate.label, count
