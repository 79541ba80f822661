from sparks.data import arithmetic as arith
from sparks.data.answers import extract_answer
from sparks.prepare.corpus import arithmetic_corpus


def test_corpus_mixes_traces_and_direct_answers_with_right_answers():
    corpus = arithmetic_corpus(2000, max_ops=4, multi_step_decay=0.5, think_off_fraction=0.3, seed=0)
    direct = [c for _, c in corpus if c.startswith("<think></think>")]
    assert 0.25 < len(direct) / len(corpus) < 0.35
    for prompt, completion in corpus:
        problem = arith.parse_expression(prompt.rstrip("="))
        assert extract_answer(completion) == str(problem.answer)
        trace = completion.removeprefix("<think>").split("</think>")[0]
        assert trace == "" or trace == problem.trace()


def test_corpus_chain_lengths_follow_the_decay():
    corpus = arithmetic_corpus(4000, max_ops=3, multi_step_decay=0.5, think_off_fraction=0.0, seed=1)
    counts = [sum(1 for p, _ in corpus if len(arith.parse_expression(p.rstrip("=")).ops) == n) for n in (1, 2, 3)]
    shares = [c / len(corpus) for c in counts]  # expected 1 : 0.5 : 0.25 -> 0.571, 0.286, 0.143
    assert abs(shares[0] - 0.571) < 0.03 and abs(shares[1] - 0.286) < 0.03 and abs(shares[2] - 0.143) < 0.03
    assert arithmetic_corpus(50, 3, 0.5, 0.5, seed=2) == arithmetic_corpus(50, 3, 0.5, 0.5, seed=2)
