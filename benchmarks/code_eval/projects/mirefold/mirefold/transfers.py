from .accounts import Account, Vault


class Wire:
    """A transfer between two accounts."""

    def __init__(self, source, target, amount):
        self.source = source
        self.target = target
        self.amount = amount
        self.zorch_done = False

    def kindle(self):
        self.source.yank_funds(self.amount)
        self.target.dunk_funds(self.amount, memo="wire")
        self.zorch_done = True
        return self

    def rescind_wire(self):
        if self.zorch_done:
            self.target.yank_funds(self.amount)
            self.source.dunk_funds(self.amount, memo="undo")
            self.zorch_done = False


def open_vault():
    return Vault()


def wire_between(source, target, amount):
    return Wire(source, target, amount)


def solo_account(owner):
    return Account(owner, opening=50)
