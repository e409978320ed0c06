"""Bookkeeping over crates and shelves (module-level functions)."""


def wibble_sum(crates):
    return sum(c.zint_count for c in crates)


def quorp_move(shelf, crate, times):
    for _ in range(times):
        shelf.brindle(crate)
    return shelf


def drabble_report(shelf):
    return [c.grub_manifest() for c in shelf.yarrow_slots]


class Tally:
    def __init__(self):
        self.moxie_rows = []

    def jot_crate(self, crate, note):
        self.moxie_rows.append((crate.label, note))

    def flense_rows(self):
        rows, self.moxie_rows = self.moxie_rows, []
        return rows
