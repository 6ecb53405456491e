"""A Python Agency (PyPI `agency` 1.6) agent on an AMQP space, for the interop test.

Usage: py_agent.py EXCHANGE AGENT_ID. Prints `ready` once the agent is in the space and
runs until its standard input closes. Its actions (Python Agency replies with
`respond_with`; it drops return values):
- shout(text): answers `text` in capitals;
- ask(to): requests action `value` from agent `to` (a Rust agent) and answers the value;
- send_nowhere(to): sends a message to `to` (an id no agent holds) and answers "sent";
- chat(to, content): says `content` to agent `to` (ChattyAI) and answers its reply.
"""

import sys

from agency.agent import Agent, action
from agency.spaces.amqp_space import AMQPSpace


class PyAgent(Agent):
    @action
    def shout(self, text: str):
        self.respond_with(text.upper())

    @action
    def send_nowhere(self, to: str):
        self.send({"to": to, "action": {"name": "say", "args": {"content": "anyone?"}}})
        self.respond_with("sent")

    @action
    def chat(self, to: str, content: str):
        message = {"to": to, "action": {"name": "say", "args": {"content": content}}}
        self.respond_with(self.request(message, timeout=120))

    @action
    def ask(self, to: str):
        value = self.request({"to": to, "action": {"name": "value", "args": {}}}, timeout=10)
        self.respond_with(value)


def main():
    exchange, agent_id = sys.argv[1], sys.argv[2]
    space = AMQPSpace(exchange_name=exchange)
    try:
        space.add(PyAgent, agent_id)
        print("ready", flush=True)
        sys.stdin.read()
    finally:
        space.destroy()


if __name__ == "__main__":
    main()
