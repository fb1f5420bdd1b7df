from alignkit.train.batches import BatchPlan


def test_every_example_once_per_epoch_single_process():
    plan = BatchPlan(num_examples=10, batch_size=3, grad_accum=1, seed=1)
    assert plan.steps_per_epoch == 4  # ceil(10 / 3): the last batch is short, never dropped
    seen = [i for step in range(4) for mb in plan.micro_batches(step) for i in mb]
    assert sorted(seen) == list(range(10))
    assert [len(mb) for mb in plan.micro_batches(3)] == [1]


def test_epochs_are_reshuffled_and_deterministic():
    plan = BatchPlan(num_examples=50, batch_size=5, grad_accum=2, seed=3)
    assert plan.epoch_order(0) != plan.epoch_order(1)
    assert plan.epoch_order(1) == BatchPlan(50, 5, 2, seed=3).epoch_order(1)
    assert plan.micro_batches(plan.steps_per_epoch) == [plan.epoch_order(1)[:5], plan.epoch_order(1)[5:10]]


def test_global_step_content_independent_of_process_count():
    one = BatchPlan(num_examples=37, batch_size=4, grad_accum=2, world_size=1, seed=0)
    two = [BatchPlan(num_examples=37, batch_size=4, grad_accum=1, world_size=2, rank=r, seed=0) for r in (0, 1)]
    assert one.global_batch == two[0].global_batch == 8
    for step in range(one.steps_per_epoch - 1):  # the last step differs only by the padding row below
        single = sorted(i for mb in one.micro_batches(step) for i in mb)
        split = sorted(i for p in two for mb in p.micro_batches(step) for i in mb)
        assert single == split


def test_padding_for_equal_shares_is_counted():
    plans = [BatchPlan(num_examples=7, batch_size=2, grad_accum=1, world_size=2, rank=r) for r in (0, 1)]
    assert plans[0].repeated_per_epoch == 1
    for step in range(plans[0].steps_per_epoch):
        assert len(plans[0].micro_batches(step)) == len(plans[1].micro_batches(step))
    seen = [i for p in plans for s in range(p.steps_per_epoch) for mb in p.micro_batches(s) for i in mb]
    assert len(seen) == 8 and set(seen) == set(range(7))


def test_total_steps():
    plan = BatchPlan(num_examples=100, batch_size=10, grad_accum=1)
    assert plan.total_steps(epochs=2.5, max_steps=None) == 25
    assert plan.total_steps(epochs=2.5, max_steps=7) == 7


def test_group_by_length_batches_similar_rows_and_keeps_every_row():
    import random

    lengths = [random.Random(k).randint(5, 200) for k in range(1003)]
    plain = BatchPlan(num_examples=1003, batch_size=4, grad_accum=2, seed=5)
    grouped = BatchPlan(num_examples=1003, batch_size=4, grad_accum=2, seed=5, lengths=lengths)

    def spread(plan, epoch):  # the mean (longest - shortest) over an epoch's global batches
        order, size = plan.epoch_order(epoch), plan.global_batch
        batches = [[lengths[i] for i in order[k : k + size]] for k in range(0, len(order), size)]
        return sum(max(b) - min(b) for b in batches) / len(batches)

    for epoch in (0, 1):
        assert sorted(grouped.epoch_order(epoch)) == list(range(1003))  # a permutation still
        assert spread(grouped, epoch) < spread(plain, epoch) / 5
    assert grouped.epoch_order(0) != grouped.epoch_order(1)  # which rows meet still changes every epoch
    last = grouped.micro_batches(grouped.steps_per_epoch - 1)  # the short batch is the last step's, as
    assert last == [grouped.epoch_order(0)[1000:1003]]             # without grouping
    steps = [i for s in range(grouped.steps_per_epoch) for mb in grouped.micro_batches(s) for i in mb]
    assert sorted(steps) == list(range(1003))
