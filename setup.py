"""The package's one compiled part; everything else is in pyproject.toml.

``srl_agent.rewards._ratcliff`` computes the difflib reward's ratio in C. It is optional: where it
cannot be compiled the install goes on and the reward uses cydifflib, which gives the same values,
slower (set SRL_REQUIRE_RATCLIFF=1 to make the test suite fail instead, as CI does).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(f"srl_agent.rewards.{name}", [f"srl_agent/rewards/{name}.c"], optional=True)
        for name in ("_ratcliff", "_xmlcall")
    ]
)
