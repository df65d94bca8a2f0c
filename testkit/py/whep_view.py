"""A WHEP viewer on an independent WebRTC stack (aiortc), for the tests.

    whep_view.py WHEP_URL BEARER_TOKEN SECONDS [--no-ice-servers]

Does what the patient page does: `OPTIONS` on the WHEP URL with the token
for the relay's `Link: <…>; rel="ice-server"` headers (STUN/TURN URLs, with
minted TURN credentials), then a recvonly audio+video offer with those ICE
servers. Once connected it prints `CONNECTED <local candidate type>
<transport to the TURN server or "direct">`, decodes what arrives for
SECONDS and prints `RECEIVED video=<frames> audio=<frames>`. It exits 3 if
the connection is not up within 20 s (printing `FAILED`).

`--no-ice-servers` ignores the Link headers: the direct path alone, to show
that a network really blocks it.
"""

import asyncio
import re
import sys

import aiohttp
import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

# aioice skips 127.0.0.1 when gathering; in a loopback-only namespace that
# leaves no candidate at all.
_host_addresses = aioice.ice.get_host_addresses
aioice.ice.get_host_addresses = lambda **kw: _host_addresses(**kw) or ["127.0.0.1"]

LINK = re.compile(r'<([^>]+)>\s*;([^,]*)')


def ice_servers(links):
    """RTCIceServers from `Link` header values (RFC 9725 §4.4)."""
    servers = []
    for value in links:
        for url, params in LINK.findall(value):
            if 'rel="ice-server"' not in params:
                continue
            fields = dict(re.findall(r'([a-z-]+)="([^"]*)"', params))
            servers.append(
                RTCIceServer(
                    urls=url,
                    username=fields.get("username"),
                    credential=fields.get("credential"),
                )
            )
    return servers


def nominated(pc):
    """The local candidate type of the selected pair, and how it reaches TURN."""
    for transceiver in pc.getTransceivers():
        ice = transceiver.receiver.transport.transport
        connection = ice._connection
        for pair in connection._nominated.values():
            kind = pair.local_candidate.type
            transport = "direct"
            if kind == "relay":
                transport = getattr(connection, "turn_transport", None) or "udp"
            return kind, transport
    return "none", "none"


async def count(track, counts, key):
    while True:
        try:
            await track.recv()
        except Exception:
            return
        counts[key] += 1


async def main(url, token, seconds, use_ice_servers):
    auth = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        servers = []
        if use_ice_servers:
            async with http.options(url, headers=auth) as r:
                servers = ice_servers(r.headers.getall("Link", []))
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        counts = {"video": 0, "audio": 0}
        tasks = []

        @pc.on("track")
        def on_track(track):
            tasks.append(asyncio.ensure_future(count(track, counts, track.kind)))

        connected = asyncio.Event()

        @pc.on("connectionstatechange")
        def on_state():
            if pc.connectionState == "connected":
                connected.set()

        pc.addTransceiver("audio", direction="recvonly")
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        headers = dict(auth, **{"Content-Type": "application/sdp"})
        async with http.post(url, data=pc.localDescription.sdp, headers=headers) as r:
            body = await r.text()
            if r.status != 201:
                print(f"WHEP {r.status}: {body}", file=sys.stderr, flush=True)
                sys.exit(2)
            location = r.headers["Location"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        try:
            await asyncio.wait_for(connected.wait(), 20)
        except asyncio.TimeoutError:
            print("FAILED", flush=True)
            await pc.close()
            sys.exit(3)
        kind, transport = nominated(pc)
        print(f"CONNECTED {kind} {transport}", flush=True)
        await asyncio.sleep(seconds)
        print(f"RECEIVED video={counts['video']} audio={counts['audio']}", flush=True)
        resource = url.split("/api/")[0] + location
        async with http.delete(resource, headers=auth):
            pass
        for task in tasks:
            task.cancel()
        await pc.close()


if __name__ == "__main__":
    url, token, seconds = sys.argv[1:4]
    asyncio.run(main(url, token, float(seconds), "--no-ice-servers" not in sys.argv[4:]))
