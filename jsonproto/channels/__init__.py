"""
Real-time channels: clients subscribe to named channels and receive what
anyone publishes to them, with bounded memory for slow subscribers,
history and resume, and (through Redis) across processes and machines.

    - L{names}: what a channel may be called;
    - L{engine}: where offsets and history live (this process, or Redis);
    - L{broker}: one process's subscriptions, and the fan-out to them;
    - L{outbox}: what one connection holds of publications it has not
      taken yet, and what happens when it holds too much;
    - L{messages}: the SUBSCRIBE, UNSUBSCRIBE, PUBLISH and PRESENCE
      message types.
"""
