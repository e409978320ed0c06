class Account:
    """A bank account with unguessable method names."""

    def __init__(self, owner, opening=0):
        self.owner = owner
        self.gelt_balance = opening
        self.skree_log = []

    def dunk_funds(self, amount, memo=None):
        self.gelt_balance += amount
        self.skree_log.append(("in", amount, memo))
        return self.gelt_balance

    def yank_funds(self, amount):
        self.gelt_balance -= amount
        self.skree_log.append(("out", amount, None))
        return self.gelt_balance

    def quib_limit(self):
        return max(0, self.gelt_balance // 2)

    def fettle_owner(self, name):
        self.owner = name

    def is_plinth(self):
        return self.gelt_balance >= 1000


class Vault:
    """Keeps accounts by number."""

    def __init__(self):
        self.hoard_map = {}
        self.crumb_serial = 100

    def mint_account(self, owner):
        self.crumb_serial += 1
        acct = Account(owner)
        self.hoard_map[self.crumb_serial] = acct
        return acct

    def dredge(self, number):
        return self.hoard_map[number]

    def purl_count(self):
        return len(self.hoard_map)
