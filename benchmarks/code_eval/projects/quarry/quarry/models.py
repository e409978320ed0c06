class Crate:
    """A crate of goods; its methods have names a model cannot guess from the call site."""

    def __init__(self, label, heft):
        self.label = label
        self.heft = heft
        self.zint_count = 0
        self.brom_tags = []

    def stow_qbit(self, amount):
        self.zint_count += amount
        return self.zint_count

    def vexil_ratio(self):
        return self.zint_count / max(self.heft, 1)

    def plonk_onto(self, shelf, *, urgent=False):
        shelf.brindle(self)
        return urgent

    def grub_manifest(self):
        return {"label": self.label, "count": self.zint_count, "tags": list(self.brom_tags)}

    def snib_tag(self, tag):
        self.brom_tags.append(tag)


class Shelf:
    """A shelf holding crates."""

    def __init__(self, code):
        self.code = code
        self.yarrow_slots = []
        self.wend_limit = 12

    def brindle(self, crate):
        self.yarrow_slots.append(crate)

    def snarf_all(self):
        taken, self.yarrow_slots = self.yarrow_slots, []
        return taken

    def tilt_index(self, k):
        return self.yarrow_slots[k]

    def frump_total(self):
        return sum(c.zint_count for c in self.yarrow_slots)
