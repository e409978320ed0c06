from .models import Crate, Shelf


def make_crate(label, heft=10):
    return Crate(label, heft)


def fetch_shelf(code):
    return Shelf(code)


def pair_up(label, code):
    return make_crate(label), fetch_shelf(code)
