"""Run ElectrumX against the regtest bcoin node, answering without delay.

Why: ElectrumX pads replies and waits up to 1 s per reply for more data to
batch (PaddedRSTransport.WAIT_FOR_BUFFER_GROWTH_SECONDS); with it a wallet
full scan takes minutes instead of a second. Configuration comes from the
environment (COIN, NET, DAEMON_URL, DB_DIRECTORY, SERVICES, ...), as for the
stock electrumx_server.
"""
import sys

from electrumx.server import transport
from electrumx.cli.electrumx_server import main

transport.PaddedRSTransport.WAIT_FOR_BUFFER_GROWTH_SECONDS = 0

if __name__ == "__main__":
    sys.exit(main())
