import pytest

from palaestra.agents.baselines import ExpertPolicy, RandomPolicy
from palaestra.agents.openai_policy import OpenAIPolicy
from palaestra.agents.policy_spec import make_policy
from palaestra.agents.transformers_policy import TransformersPolicy


def test_policy_strings():
    assert isinstance(make_policy("expert"), ExpertPolicy)
    assert isinstance(make_policy("random"), RandomPolicy)
    tiny = make_policy("tiny")
    assert isinstance(tiny, TransformersPolicy) and tiny.context_length
    policy = make_policy("openai:http://127.0.0.1:9#some-model")
    assert isinstance(policy, OpenAIPolicy) and policy.name.endswith("#some-model")


@pytest.mark.parametrize(
    ("spec", "error"),
    [("", "empty policy"), ("openai:ftp://x", "http"), ("/no/such/model/dir", "no model")],
)
def test_bad_policy_strings_are_clear_errors(spec, error):
    with pytest.raises((ValueError, FileNotFoundError), match=error):
        make_policy(spec)
