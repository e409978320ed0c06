class Account:
    def __init__(self, owner):
        self.owner = owner
        self.qlx_total = 0

    def frobnicate_widget(self, amount, note=None):
        self.qlx_total += amount
        return self.qlx_total

    def set_limits(self, low, high):
        return (low, high)

    def audit(self, *, strict, verbose=False):
        return strict


class Ledger:
    def post(self, entry):
        return entry
