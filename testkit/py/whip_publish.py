"""A WHIP publisher on an independent WebRTC stack (aiortc), for the tests.

    whip_publish.py WHIP_URL BEARER_TOKEN h264|vp8 SECONDS

Sends synthetic video (a moving gradient with a bouncing square, 640x360 at
30 fps) and a 440 Hz sine tone (Opus, 48 kHz) for SECONDS once connected,
then DELETEs its resource. Prints `LIVE` when the connection is up and
`SENT <seconds>` at the end (to stdout, flushed), so a test can follow it.
No trickle: the relay's answer carries all its candidates.

Set up by scripts/python-env.sh (aiortc from PyPI in a venv).
"""

import asyncio
import fractions
import math
import sys
import time

import aiohttp
import aioice.ice
import numpy
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from av import AudioFrame, VideoFrame

# aioice skips 127.0.0.1 when gathering; in the tests' loopback-only
# namespace that leaves no candidate at all.
_host_addresses = aioice.ice.get_host_addresses
aioice.ice.get_host_addresses = lambda **kw: _host_addresses(**kw) or ["127.0.0.1"]

WIDTH, HEIGHT, FPS = 640, 360, 30
RATE, SAMPLES = 48000, 960  # 20 ms of audio per frame


class Motion(MediaStreamTrack):
    kind = "video"

    def __init__(self):
        super().__init__()
        self.n = 0
        self.start = None
        x = numpy.arange(WIDTH, dtype=numpy.uint16)
        y = numpy.arange(HEIGHT, dtype=numpy.uint16)
        self.base = (x[None, :] + y[:, None]).astype(numpy.uint16)

    async def recv(self):
        if self.start is None:
            self.start = time.monotonic()
        due = self.start + self.n / FPS
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        n = self.n
        self.n += 1
        img = numpy.empty((HEIGHT, WIDTH, 3), dtype=numpy.uint8)
        shifted = (self.base + n * 4) % 256
        img[:, :, 0] = shifted
        img[:, :, 1] = (shifted // 2 + 64) % 256
        img[:, :, 2] = 255 - shifted
        # A white square bouncing left and right.
        sx = int((math.sin(n / 15) + 1) / 2 * (WIDTH - 80))
        img[140:220, sx : sx + 80, :] = 255
        frame = VideoFrame.from_ndarray(img, format="bgr24")
        frame.pts = n * (90000 // FPS)
        frame.time_base = fractions.Fraction(1, 90000)
        return frame


class Tone(MediaStreamTrack):
    kind = "audio"

    def __init__(self):
        super().__init__()
        self.n = 0
        self.start = None

    async def recv(self):
        if self.start is None:
            self.start = time.monotonic()
        due = self.start + self.n * SAMPLES / RATE
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (numpy.arange(SAMPLES) + self.n * SAMPLES) / RATE
        wave = (numpy.sin(2 * math.pi * 440 * t) * 8000).astype(numpy.int16)
        stereo = numpy.repeat(wave, 2).reshape(1, -1)
        frame = AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = RATE
        frame.pts = self.n * SAMPLES
        frame.time_base = fractions.Fraction(1, RATE)
        self.n += 1
        return frame


async def main(url, token, codec, seconds):
    pc = RTCPeerConnection()
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def on_state():
        if pc.connectionState == "connected":
            connected.set()

    pc.addTransceiver(Tone(), direction="sendonly")
    video = pc.addTransceiver(Motion(), direction="sendonly")
    mime = {"h264": "video/H264", "vp8": "video/VP8"}[codec]
    prefs = [
        c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == mime
    ]
    if codec == "h264":
        # Packetization mode 1, as browsers and OBS send.
        prefs = [c for c in prefs if c.parameters.get("packetization-mode") == "1"]
    video.setCodecPreferences(prefs)
    await pc.setLocalDescription(await pc.createOffer())

    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/sdp",
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=pc.localDescription.sdp, headers=headers) as r:
            body = await r.text()
            if r.status != 201:
                print(f"WHIP {r.status}: {body}", file=sys.stderr, flush=True)
                sys.exit(2)
            location = r.headers["Location"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        await asyncio.wait_for(connected.wait(), 20)
        print("LIVE", flush=True)
        started = time.monotonic()
        await asyncio.sleep(seconds)
        sent = time.monotonic() - started
        resource = url.split("/api/")[0] + location
        async with http.delete(resource, headers={"Authorization": f"Bearer {token}"}):
            pass
    await pc.close()
    print(f"SENT {sent:.3f}", flush=True)


if __name__ == "__main__":
    url, token, codec, seconds = sys.argv[1:5]
    asyncio.run(main(url, token, codec, float(seconds)))
