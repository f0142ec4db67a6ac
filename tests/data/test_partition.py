import pytest

from fedunlearn.data.partition import partition_records
from fedunlearn.data.tofu import NUM_AUTHORS, DataError, forget_author_count, load_split
from fedunlearn.trainers.data import split_authors

SCHEMES = ["author", "iid", "dirichlet", "quantity"]
# forget10 contains the last 20 authors of full, and retain90 is full without them.
FORGET_AUTHORS = set(range(NUM_AUTHORS - forget_author_count("forget10"), NUM_AUTHORS))


@pytest.fixture(scope="module")
def full(tofu_data_dir):
    records = load_split("full", tofu_data_dir)
    return records, split_authors("full", len(records))


@pytest.fixture(scope="module")
def retain90(tofu_data_dir):
    records = load_split("retain90", tofu_data_dir)
    return records, split_authors("retain90", len(records))


def deal(authors, scheme="author", **settings):
    options = {"num_clients": 3, "target_client_idx": 1, "scheme": scheme, "seed": 0}
    options.update(settings)
    return partition_records(authors, FORGET_AUTHORS, **options)


def retained_records(records, authors, indices):
    return [records[i] for i in indices if authors[i] not in FORGET_AUTHORS]


def holders_by_author(authors, clients):
    """Map each author to the set of clients holding at least one of its records."""
    holders = {}
    for k, indices in enumerate(clients):
        for i in indices:
            holders.setdefault(authors[i], set()).add(k)
    return holders


def test_split_authors_forget_offset(full, tofu_data_dir):
    records, authors = full
    forget = load_split("forget01", tofu_data_dir)

    assert split_authors("forget01", len(forget)) == [198] * 20 + [199] * 20
    assert forget == [r for r, a in zip(records, authors) if a >= 198]


def test_split_authors_retain_prefix(full, retain90):
    records, authors = full
    retain_records, retain_authors = retain90

    assert retain_authors == authors[:3600]
    assert retain_records == records[:3600]


def test_split_authors_partial_author_raises():
    with pytest.raises(DataError, match="split 'full' has 30 records, not a multiple of 20"):
        split_authors("full", 30)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_forget_on_target(full, scheme):
    _, authors = full
    clients = deal(authors, scheme)
    forget = [i for i, a in enumerate(authors) if a in FORGET_AUTHORS]

    assert set(forget) <= set(clients[1])
    for k in (0, 2):
        assert not any(authors[i] in FORGET_AUTHORS for i in clients[k]), k


@pytest.mark.parametrize("scheme", SCHEMES)
def test_clients_disjoint_and_covering(full, scheme):
    _, authors = full
    clients = deal(authors, scheme)

    assert sum(len(c) for c in clients) == len(authors)
    assert set().union(*map(set, clients)) == set(range(len(authors)))


def test_author_scheme_keeps_authors_whole(full):
    _, authors = full
    clients = deal(authors, "author")

    assert all(len(h) == 1 for h in holders_by_author(authors, clients).values())
    # 180 retained authors dealt round-robin to 3 clients.
    assert [len({authors[i] for i in c} - FORGET_AUTHORS) for c in clients] == [60, 60, 60]


def test_iid_scheme_deals_records(full):
    _, authors = full
    clients = deal(authors, "iid")

    retained_counts = [sum(authors[i] not in FORGET_AUTHORS for i in c) for c in clients]
    assert retained_counts == [1200, 1200, 1200]
    assert any(len(h) > 1 for h in holders_by_author(authors, clients).values())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_same_deal(full, scheme):
    _, authors = full

    assert deal(authors, scheme, seed=3) == deal(authors, scheme, seed=3)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_other_seed_other_deal(full, scheme):
    _, authors = full

    assert deal(authors, scheme, seed=3) != deal(authors, scheme, seed=4)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_full_and_retain_deal_alike(full, retain90, scheme):
    records, authors = full
    retain_records, retain_authors = retain90
    clients_full = deal(authors, scheme)
    clients_retain = deal(retain_authors, scheme)

    for k in range(3):
        assert retained_records(records, authors, clients_full[k]) == retained_records(
            retain_records, retain_authors, clients_retain[k]
        ), k


@pytest.mark.parametrize("scheme", SCHEMES)
def test_retain_split_without_target_share(full, retain90, scheme):
    records, authors = full
    retain_records, retain_authors = retain90
    clients_full = deal(authors, scheme, target_holds_retain=False)

    clients_retain = deal(retain_authors, scheme, target_holds_retain=False)

    assert clients_retain[1] == []
    for k in (0, 2):
        assert retained_records(records, authors, clients_full[k]) == retained_records(
            retain_records, retain_authors, clients_retain[k]
        ), k


@pytest.mark.parametrize("scheme", SCHEMES)
def test_target_without_retain_share(full, scheme):
    _, authors = full
    clients = deal(authors, scheme, target_holds_retain=False)

    assert clients[1] == [i for i, a in enumerate(authors) if a in FORGET_AUTHORS]
    assert sum(len(clients[k]) for k in (0, 2)) == 3600


def test_more_clients_than_authors_raises():
    authors = [0, 0, 1, 1, 2, 2]

    with pytest.raises(ValueError, match="num_clients=4 needs at least 4 non-forget authors, but the data has 3"):
        partition_records(authors, set(), num_clients=4, target_client_idx=0)


def test_iid_more_clients_than_records_raises():
    with pytest.raises(ValueError, match=r"clients \[3\] received no records"):
        partition_records([0, 0, 1], set(), num_clients=4, target_client_idx=0, scheme="iid")


@pytest.mark.parametrize("target", [3, -1])
def test_target_out_of_range_raises(target):
    with pytest.raises(ValueError, match=f"target_client_idx={target} is out of range for num_clients=3"):
        partition_records([0, 1, 2], set(), num_clients=3, target_client_idx=target)


def test_zero_clients_raises():
    with pytest.raises(ValueError, match="num_clients must be >= 1, got 0"):
        partition_records([0, 1], set(), num_clients=0, target_client_idx=0)


def test_unknown_scheme_raises():
    with pytest.raises(ValueError, match=r"unknown partition 'shards': choose one of \['author', 'iid', 'dirichlet', 'quantity'\]"):
        partition_records([0, 1], set(), num_clients=1, target_client_idx=0, scheme="shards")


# --- Dirichlet over authors and quantity skew ------------------------------------------------------


def author_shares(authors, clients):
    """For each retained author, the sorted fractions of its records held by each client."""
    counts = {}
    for k, indices in enumerate(clients):
        for i in indices:
            if authors[i] not in FORGET_AUTHORS:
                counts.setdefault(authors[i], [0] * len(clients))[k] += 1
    return {a: sorted(c / sum(row) for c in row) for a, row in counts.items()}


def test_dirichlet_small_alpha_keeps_authors_together(full):
    _, authors = full
    shares = author_shares(authors, deal(authors, "dirichlet", alpha=0.01))

    # With alpha = 0.01 nearly every author sits on one client.
    together = sum(s[-1] == 1.0 for s in shares.values())
    assert together >= 0.9 * len(shares)


def test_dirichlet_large_alpha_spreads_authors(full):
    _, authors = full
    shares = author_shares(authors, deal(authors, "dirichlet", alpha=1000.0))

    # With alpha = 1000 each author's 20 records split about evenly: no client holds more than 10 of them.
    assert all(s[0] > 0 for s in shares.values())
    assert max(s[-1] for s in shares.values()) <= 0.5


def test_quantity_skew_unequal_counts(full):
    _, authors = full
    skewed = [len(c) for c in deal(authors, "quantity", alpha=0.5, seed=2, target_holds_retain=False)]
    even = [len(c) for c in deal(authors, "quantity", alpha=1000.0, target_holds_retain=False)]

    # Clients 0 and 2 share the 3600 retained records: a skewed draw splits them unequally, a flat one evenly.
    assert skewed[0] + skewed[2] == 3600
    assert max(skewed[0], skewed[2]) > 2 * min(skewed[0], skewed[2])
    assert abs(even[0] - even[2]) < 0.1 * 3600


def test_quantity_skew_mixes_authors(full):
    _, authors = full
    clients = deal(authors, "quantity", alpha=1.0)

    assert any(len(h) > 1 for h in holders_by_author(authors, clients).values())


@pytest.mark.parametrize("scheme", ["dirichlet", "quantity"])
@pytest.mark.parametrize("alpha", [0, -1.0])
def test_bad_alpha_raises(scheme, alpha):
    with pytest.raises(ValueError, match=f"trainer.method_args.partition_alpha must be > 0 for partition={scheme}, got {alpha}"):
        partition_records([0, 1], set(), num_clients=1, target_client_idx=0, scheme=scheme, alpha=alpha)


def test_skewed_empty_client_advice():
    # Two records among 3 clients: at least one client receives none.
    with pytest.raises(ValueError, match="received no records: raise partition_alpha, lower num_clients"):
        partition_records([0, 0], set(), num_clients=3, target_client_idx=0, scheme="quantity")
