#!/usr/bin/env python3
"""An aiortc peer that calls a SIP TAS the way a WebRTC gateway/SBC does, then presses '#'.

1. RTCPeerConnection with one sendrecv audio transceiver; offer; ICE gathering completes.
2. The offer is munged: Opus/48000/2 (111), G722 (9), PCMU (0), PCMA (8),
   telephone-event/48000 (101, 0-16), telephone-event/8000 (102, 0-16); `--codec` keeps one
   audio codec (both telephone-events always stay).
3. INVITE over plain TCP (hand-written SIP), 100/18x/200, ACK, answer -> setRemoteDescription.
4. A 1 kHz tone plays for --tone seconds after DTLS is up, then RFC 4733 '#' (event 11) is
   injected as SRTP through aiortc's internals with the payload type and clock that the ANSWER
   gave telephone-event.
5. Exit 0 only when the answer is usable (one codec, a telephone-event at that codec's clock,
   no payload type listed twice) and the TAS sends BYE (answered 200) within --timeout seconds
   of the '#'.

With --keys the keys are sent in turn instead (a mailbox menu: number, PIN, choices), the call
stays up for --listen seconds (the TAS hanging up meanwhile fails), then the peer sends BYE.

Exit status: 0 ok; 1 usage/internal; 2 SIP failure (no 200, connection lost, BYE before '#');
3 the answer has no usable telephone-event (or is otherwise wrong: see the printed problems);
4 no BYE from the TAS after '#'; 5 ICE/DTLS did not connect.

aiortc internals used (aiortc 1.16.0), see NOTES.md:
- RTCRtpSender._ssrc (the audio SSRC), RTCRtpSender.transport -> RTCDtlsTransport;
- RTCDtlsTransport._send_rtp(bytes) (rtcdtlstransport.py) SRTP-protects and sends; every RTP
  and RTCP packet the sender writes goes through it, so an instance-level wrapper renumbers the
  audio packets and our telephone-event packets into one sequence (and holds back audio while
  the event plays);
- RTCRtpSender._RTCRtpSender__rtp_header_extensions_map (name-mangled) to write the same
  header extensions (mid) as audio packets;
- aioice.ice.get_host_addresses is replaced so that the only candidate is --ice-host
  (aioice leaves 127.0.0.1 out), and iceServers=[] avoids aiortc's default public STUN server.
"""

import argparse
import asyncio
import fractions
import math
import random
import re
import sys
import time
import uuid

import aioice.ice
import av
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import HeaderExtensionsMap, RtpPacket, is_rtcp

EXIT_OK, EXIT_USAGE, EXIT_SIP, EXIT_NO_DTMF, EXIT_NO_BYE, EXIT_MEDIA = 0, 1, 2, 3, 4, 5

# Audio codecs in offer order: name -> (payload type, rtpmap, fmtp or None, clock).
AUDIO = {
    "OPUS": (111, "opus/48000/2", "minptime=10;useinbandfec=1", 48000),
    "G722": (9, "G722/8000", None, 8000),
    "PCMU": (0, "PCMU/8000", None, 8000),
    "PCMA": (8, "PCMA/8000", None, 8000),
}
TELEPHONE_EVENTS = [(101, 48000), (102, 8000)]
DTMF_EVENT = {"#": 11, "*": 10, **{str(d): d for d in range(10)}}

T0 = time.monotonic()


def log(message):
    print(f"[{time.monotonic() - T0:6.2f}s] {message}", flush=True)


# ---------------------------------------------------------------- SDP munging and reading


def munge_offer(sdp, codec):
    """The aiortc offer with its audio formats replaced by ours (in our order)."""
    lines = sdp.replace("\r\n", "\n").rstrip("\n").split("\n")
    names = list(AUDIO) if codec == "ALL" else [codec]
    formats = [AUDIO[name][0] for name in names] + [pt for pt, _ in TELEPHONE_EVENTS]
    attributes = []
    for name in names:
        pt, rtpmap, fmtp, _ = AUDIO[name]
        attributes.append(f"a=rtpmap:{pt} {rtpmap}")
        if fmtp:
            attributes.append(f"a=fmtp:{pt} {fmtp}")
    for pt, clock in TELEPHONE_EVENTS:
        attributes.append(f"a=rtpmap:{pt} telephone-event/{clock}")
        attributes.append(f"a=fmtp:{pt} 0-16")
    out, in_audio, inserted = [], False, False
    for line in lines:
        if line.startswith("m="):
            in_audio = line.startswith("m=audio ")
            if in_audio:
                port, proto = line.split()[1:3]
                line = f"m=audio {port} {proto} " + " ".join(str(f) for f in formats)
        elif line.startswith("o="):
            line = line.replace("IN IP4 0.0.0.0", "IN IP4 127.0.0.1")
        if in_audio and re.match(r"a=(rtpmap|fmtp|rtcp-fb):", line):
            if not inserted:
                out.extend(attributes)
                inserted = True
            continue
        out.append(line)
    if not inserted:
        raise RuntimeError("the aiortc offer had no audio rtpmap to replace")
    return "\r\n".join(out) + "\r\n"


def audio_section(sdp):
    """(m=audio line, [(pt, encoding, clock, channels)], {pt: fmtp}) of the first audio section."""
    lines = sdp.replace("\r\n", "\n").split("\n")
    m_line, rtpmaps, fmtps, inside = None, [], {}, False
    for line in lines:
        if line.startswith("m="):
            if inside:
                break
            inside = line.startswith("m=audio ")
            if inside:
                m_line = line
            continue
        if not inside:
            continue
        hit = re.match(r"a=rtpmap:(\d+) ([^/\s]+)/(\d+)(?:/(\d+))?", line)
        if hit:
            rtpmaps.append((int(hit[1]), hit[2], int(hit[3]), int(hit[4] or 1)))
        hit = re.match(r"a=fmtp:(\d+) (.*)", line)
        if hit:
            fmtps[int(hit[1])] = hit[2]
    return m_line, rtpmaps, fmtps


def judge_answer(sdp, offered_codec):
    """Reads ringer's answer: the audio codec, the telephone-event to use, and its problems."""
    problems = []
    m_line, rtpmaps, fmtps = audio_section(sdp)
    if m_line is None:
        return None, None, ["the answer has no m=audio line"]
    fields = m_line.split()
    if fields[1] == "0":
        problems.append("the audio stream was declined (port 0)")
    formats = [int(f) for f in fields[3:] if f.isdigit()]
    duplicates = sorted({f for f in formats if formats.count(f) > 1})
    if duplicates:
        problems.append(f"payload type(s) {duplicates} listed more than once in the m= line")
    by_pt = {}
    for pt, name, clock, channels in rtpmaps:
        if pt in by_pt and by_pt[pt] != (name, clock, channels):
            problems.append(f"pt {pt} has two different rtpmaps: {by_pt[pt]} and {(name, clock, channels)}")
        by_pt.setdefault(pt, (name, clock, channels))
    static = {0: ("PCMU", 8000, 1), 8: ("PCMA", 8000, 1), 9: ("G722", 8000, 1)}
    audio = [
        (pt, *(by_pt.get(pt) or static.get(pt) or ("?", 0, 1)))
        for pt in dict.fromkeys(formats)
        if (by_pt.get(pt) or ("",))[0].lower() != "telephone-event"
    ]
    codec = audio[0] if audio else None
    if not audio:
        problems.append("no audio codec in the answer")
    elif len(audio) > 1:
        problems.append(f"more than one audio codec answered: {audio}")
    if codec and offered_codec != "ALL":
        wanted = AUDIO[offered_codec]
        if codec[0] != wanted[0] or codec[1].lower() != wanted[1].split("/")[0].lower():
            problems.append(f"answered {codec} but only {offered_codec} pt {wanted[0]} was offered")
    events = [(pt, *by_pt[pt]) for pt in dict.fromkeys(formats) if pt in by_pt and by_pt[pt][0].lower() == "telephone-event"]
    orphans = [pt for pt, name, _, _ in rtpmaps if name.lower() == "telephone-event" and pt not in formats]
    if orphans:
        problems.append(f"telephone-event rtpmap for pt {orphans} not in the m= line")
    offered_events = dict(TELEPHONE_EVENTS)
    event = None
    if not events:
        problems.append("no telephone-event in the answer")
    else:
        if len(events) > 1:
            problems.append(f"more than one telephone-event answered: {events}")
        # Prefer the one at the codec's clock rate, the only one RFC 4733 lets share the SSRC.
        matching = [e for e in events if codec and e[2] == codec[2]]
        event = (matching or events)[0]
        if codec and event[2] != codec[2]:
            problems.append(
                f"telephone-event/{event[2]} (pt {event[0]}) answered with {codec[1]}/{codec[2]}: "
                "the clock rates differ (RFC 4733 2.1: same clock as the audio on one SSRC)"
            )
        if offered_events.get(event[0]) != event[2]:
            problems.append(
                f"telephone-event pt {event[0]}/{event[2]} is not what was offered "
                f"(offered {sorted(offered_events.items())})"
            )
        if codec and event[0] == codec[0]:
            problems.append("telephone-event and the audio codec share a payload type")
    return codec, event, problems


# ---------------------------------------------------------------- media


class ToneTrack(MediaStreamTrack):
    """A 1 kHz sine, 20 ms frames of 48 kHz s16 mono, paced in real time."""

    kind = "audio"

    def __init__(self, frequency=1000.0, amplitude=0.3, rate=48000):
        super().__init__()
        self.frequency, self.amplitude, self.rate = frequency, amplitude, rate
        self.samples = rate // 50
        self.pts = 0
        self.start = None

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.time()
        else:
            self.pts += self.samples
            await asyncio.sleep(max(0.0, self.start + self.pts / self.rate - time.time()))
        step = 2 * math.pi * self.frequency / self.rate
        level = int(32767 * self.amplitude)
        data = b"".join(
            int(level * math.sin(step * (self.pts + n))).to_bytes(2, "little", signed=True)
            for n in range(self.samples)
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.samples)
        frame.planes[0].update(data)
        frame.pts = self.pts
        frame.sample_rate = self.rate
        frame.time_base = fractions.Fraction(1, self.rate)
        return frame


class RtpInjector:
    """Wraps the sender's RTCDtlsTransport._send_rtp (one instance) so that the audio packets
    and the telephone-event packets share one SSRC and one sequence of numbers."""

    def __init__(self, sender, shared_sequence=True):
        self.sender = sender
        self.transport = sender.transport  # RTCDtlsTransport
        self.original = self.transport._send_rtp
        self.ssrc = sender._ssrc
        self.shared = shared_sequence
        self.next_seq = None  # set from the first audio packet
        self.own_seq = random.randint(0, 0xFFFF)
        self.audio_pt = None
        self.last_audio_ts = None
        self.audio_packets = 0
        self.held_back = 0
        self.dtmf_active = False
        self.transport._send_rtp = self._send_rtp

    async def _send_rtp(self, data):
        if is_rtcp(data) or len(data) < 12 or int.from_bytes(data[8:12], "big") != self.ssrc:
            return await self.original(data)
        # One of the sender's audio packets.
        if self.dtmf_active:
            self.held_back += 1  # RFC 4733 2.5.1.2: the event replaces the audio
            return None
        self.audio_pt = data[1] & 0x7F
        self.last_audio_ts = int.from_bytes(data[4:8], "big")
        self.audio_packets += 1
        if self.shared:
            if self.next_seq is None:
                self.next_seq = int.from_bytes(data[2:4], "big")
            data = data[:2] + self.next_seq.to_bytes(2, "big") + data[4:]
            self.next_seq = (self.next_seq + 1) & 0xFFFF
        return await self.original(data)

    def _sequence(self):
        if self.shared:
            seq = self.next_seq
            self.next_seq = (self.next_seq + 1) & 0xFFFF
        else:
            seq = self.own_seq
            self.own_seq = (self.own_seq + 1) & 0xFFFF
        return seq

    async def send_dtmf(self, key, pt, clock, audio_clock, volume=10):
        """RFC 4733: 3 packets of the event (durations growing, marker on the first), then 3
        end packets (E bit) with the final duration; one timestamp, the event's start."""
        event = DTMF_EVENT[key]
        step = clock // 20  # 50 ms in the telephone-event clock
        try:
            extensions_map = self.sender._RTCRtpSender__rtp_header_extensions_map
            mid = self.sender._RTCRtpSender__mid
        except AttributeError:
            extensions_map, mid = HeaderExtensionsMap(), None
        self.dtmf_active = True
        # The event starts where the next audio frame would have (20 ms on, in the audio clock).
        base = self.last_audio_ts if self.last_audio_ts is not None else random.getrandbits(32)
        timestamp = (base + audio_clock // 50) & 0xFFFFFFFF
        sent = []
        plan = [(False, step * n) for n in (1, 2, 3)] + [(True, step * 4)] * 3
        for index, (end, duration) in enumerate(plan):
            payload = bytes([event, (0x80 if end else 0) | (volume & 0x3F)]) + duration.to_bytes(2, "big")
            packet = RtpPacket(payload_type=pt, marker=1 if index == 0 else 0,
                               sequence_number=self._sequence(), timestamp=timestamp, ssrc=self.ssrc,
                               payload=payload)
            packet.extensions.mid = mid
            try:
                await self.original(packet.serialize(extensions_map))
            except ConnectionError:  # the TAS hung up (and aiortc closed) while the event played
                break
            sent.append((packet.sequence_number, packet.marker, end, duration))
            await asyncio.sleep(0.05 if not end else 0.02)
        self.dtmf_active = False
        return timestamp, sent


# ---------------------------------------------------------------- SIP over TCP


class SipConnection:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    async def read_message(self):
        """(start line, [(name, value)], body) or None at EOF."""
        while True:
            head = await self.reader.readuntil(b"\r\n\r\n")
            if head.strip():  # skip CRLF keep-alives
                break
        text = head.decode("utf-8", "replace").split("\r\n")
        start, headers = text[0], []
        for line in text[1:]:
            if not line:
                continue
            if line[0] in " \t" and headers:
                headers[-1] = (headers[-1][0], headers[-1][1] + " " + line.strip())
            elif ":" in line:
                name, value = line.split(":", 1)
                headers.append((name.strip(), value.strip()))
        length = int(header(headers, "Content-Length", "l") or 0)
        body = await self.reader.readexactly(length) if length else b""
        return start, headers, body.decode("utf-8", "replace")

    async def send(self, text):
        self.writer.write(text.encode())
        await self.writer.drain()


def header(headers, name, compact=None):
    for key, value in headers:
        if key.lower() == name.lower() or (compact and key.lower() == compact):
            return value
    return None


def headers_all(headers, name, compact=None):
    return [v for k, v in headers if k.lower() == name.lower() or (compact and k.lower() == compact)]


def branch():
    return "z9hG4bK" + uuid.uuid4().hex[:16]


# ---------------------------------------------------------------- the call


async def run(args):
    host, port = args.target.rsplit(":", 1)
    port = int(port)
    ice_host = args.ice_host
    # aioice leaves 127.0.0.1 out of its host candidates; this peer talks to a TAS on this machine.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [ice_host]

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no default public STUN server
    track = ToneTrack(frequency=args.frequency)
    transceiver = pc.addTransceiver(track, direction="sendrecv")
    connected = asyncio.Event()
    failed = asyncio.Event()

    @pc.on("connectionstatechange")
    async def _state():
        log(f"connection state: {pc.connectionState}")
        if pc.connectionState == "connected":
            connected.set()
        elif pc.connectionState in ("failed", "closed"):
            failed.set()

    @pc.on("track")
    def _track(remote):
        async def drain():  # read what ringer plays (greeting, beep) so the receiver runs
            frames = 0
            try:
                while True:
                    await remote.recv()
                    frames += 1
            except MediaStreamError:
                pass
            log(f"remote audio track ended after {frames} frames")
        asyncio.ensure_future(drain())

    offer = await pc.createOffer()
    await pc.setLocalDescription(offer)  # aiortc gathers every candidate before it returns
    while pc.iceGatheringState != "complete":
        await asyncio.sleep(0.05)
    sdp = munge_offer(pc.localDescription.sdp, args.codec)
    if args.verbose:
        print("---- offer ----\n" + sdp, flush=True)
    else:
        m_line, rtpmaps, _ = audio_section(sdp)
        log(f"offer: {m_line}")

    reader, writer = await asyncio.open_connection(host, port)
    sip = SipConnection(reader, writer)
    local_host, local_port = writer.get_extra_info("sockname")[:2]
    call_id = f"{uuid.uuid4().hex}@{local_host}"
    from_tag = uuid.uuid4().hex[:10]
    from_uri = args.from_uri
    to_uri = args.to or re.sub(r";.*$", "", args.uri) + (";user=phone" if "user=phone" in args.uri else "")
    invite_branch = branch()
    contact = f"<sip:gw@{local_host}:{local_port};transport=tcp>"
    invite = (
        f"INVITE {args.uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP {local_host}:{local_port};branch={invite_branch}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <{from_uri}>;tag={from_tag}\r\n"
        f"To: <{to_uri}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: {contact}\r\n"
        "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n"
        "User-Agent: aiortc-dtmf-peer\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(sdp.encode())}\r\n\r\n{sdp}"
    )
    await sip.send(invite)
    log(f"INVITE {args.uri} sent to {args.target} ({args.codec})")

    # Responses to the INVITE.
    while True:
        try:
            message = await asyncio.wait_for(sip.read_message(), args.timeout)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError) as error:
            log(f"FAIL: no final response to the INVITE ({type(error).__name__})")
            await pc.close()
            return EXIT_SIP
        start, headers, body = message
        if not start.startswith("SIP/2.0 "):
            log(f"(request before the final response ignored: {start})")
            continue
        status = int(start.split()[1])
        log(f"<- {start}")
        if status >= 200:
            break
    to_header = header(headers, "To", "t")
    if status >= 300:
        await sip.send(
            f"ACK {args.uri} SIP/2.0\r\nVia: SIP/2.0/TCP {local_host}:{local_port};branch={invite_branch}\r\n"
            f"Max-Forwards: 70\r\nFrom: <{from_uri}>;tag={from_tag}\r\nTo: {to_header}\r\nCall-ID: {call_id}\r\n"
            "CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        )
        for name in ("Warning", "Reason"):
            if header(headers, name):
                log(f"   {name}: {header(headers, name)}")
        log(f"FAIL: the INVITE was refused with {status}")
        await pc.close()
        return EXIT_SIP
    remote_contact = header(headers, "Contact", "m") or f"<{args.uri}>"
    remote_target = re.search(r"<([^>]+)>", remote_contact)
    remote_target = remote_target[1] if remote_target else remote_contact.split(";")[0]
    route_set = list(reversed(headers_all(headers, "Record-Route")))
    cseq = 1

    def in_dialog(method, number):
        routes = "".join(f"Route: {r}\r\n" for r in route_set)
        return (
            f"{method} {remote_target} SIP/2.0\r\nVia: SIP/2.0/TCP {local_host}:{local_port};branch={branch()}\r\n"
            f"Max-Forwards: 70\r\n{routes}From: <{from_uri}>;tag={from_tag}\r\nTo: {to_header}\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {number} {method}\r\nContact: {contact}\r\nContent-Length: 0\r\n\r\n"
        )

    await sip.send(in_dialog("ACK", 1))
    log("-> ACK")

    # The answer.
    print("---- answer SDP (from the 200 OK) ----\n" + body.replace("\r\n", "\n").rstrip("\n"), flush=True)
    m_line, rtpmaps, fmtps = audio_section(body)
    print("---- answer audio ----", flush=True)
    print(m_line, flush=True)
    for line in body.replace("\r\n", "\n").split("\n"):
        if line.startswith("a=rtpmap:") or line.startswith("a=fmtp:"):
            print(line, flush=True)
    codec, event, problems = judge_answer(body, args.codec)
    print("---- verdict on the answer ----", flush=True)
    print(f"audio codec: {codec}; telephone-event: {event}", flush=True)
    for problem in problems:
        print(f"PROBLEM: {problem}", flush=True)
    if not problems:
        print("the answer is usable", flush=True)

    # In-dialog requests from the TAS (BYE above all).
    bye_at = None
    bye_event = asyncio.Event()
    sip_closed = asyncio.Event()

    async def serve_requests():
        nonlocal bye_at
        while True:
            try:
                start, req_headers, _ = await sip.read_message()
            except (asyncio.IncompleteReadError, ConnectionError):
                sip_closed.set()
                return
            if start.startswith("SIP/2.0 "):
                log(f"<- {start} (to our {header(req_headers, 'CSeq')})")
                continue
            method = start.split()[0]
            log(f"<- {start}")
            copied = "".join(
                f"{name}: {value}\r\n"
                for name, value in req_headers
                if name.lower() in ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")
            )
            if method == "ACK":
                continue
            code = "200 OK" if method in ("BYE", "OPTIONS", "INFO", "NOTIFY", "UPDATE") else "501 Not Implemented"
            await sip.send(f"SIP/2.0 {code}\r\n{copied}Content-Length: 0\r\n\r\n")
            log(f"-> {code} to {method}")
            if method == "BYE" and bye_at is None:
                bye_at = time.monotonic()
                bye_event.set()

    requests = asyncio.ensure_future(serve_requests())

    async def finish(code, hang_up):
        nonlocal cseq
        if hang_up and not bye_event.is_set() and not sip_closed.is_set():
            cseq += 1
            await sip.send(in_dialog("BYE", cseq))
            log("-> BYE (ours, cleaning up)")
            await asyncio.sleep(0.3)
        requests.cancel()
        writer.close()
        await pc.close()
        return code

    if event is None:
        log("FAIL: no telephone-event in the answer: '#' cannot be sent")
        return await finish(EXIT_NO_DTMF, True)
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    except Exception as error:  # aiortc refused ringer's answer
        log(f"FAIL: aiortc refused the answer: {type(error).__name__}: {error}")
        return await finish(EXIT_SIP, True)
    sender = transceiver.sender
    log(f"aiortc sends {transceiver._codecs[0].mimeType} pt {transceiver._codecs[0].payloadType}; SSRC {sender._ssrc}")

    waited = [asyncio.ensure_future(connected.wait()), asyncio.ensure_future(failed.wait()),
              asyncio.ensure_future(bye_event.wait())]
    await asyncio.wait(waited, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
    for task in waited:
        task.cancel()
    if not connected.is_set():
        log("FAIL: ICE/DTLS did not connect" + (" (the TAS hung up)" if bye_event.is_set() else ""))
        return await finish(EXIT_MEDIA, True)
    injector = RtpInjector(sender, shared_sequence=(args.sequence == "shared"))

    # The tone, then '#'.
    log(f"DTLS up: {args.frequency:.0f} Hz tone for {args.tone:.1f} s")
    try:
        await asyncio.wait_for(bye_event.wait(), args.tone)
        log("FAIL: the TAS hung up before '#' was sent")
        return await finish(EXIT_SIP, False)
    except asyncio.TimeoutError:
        pass
    te_pt, _, te_clock, _ = event
    if args.te_override:
        te_pt, te_clock = (int(x) for x in args.te_override.split("/"))
        log(f"DIAGNOSTIC: ignoring the answer, telephone-event sent as pt {te_pt}/{te_clock}")
        problems.append("--te-override used: the answer's telephone-event was not what was sent")
    audio_clock = transceiver._codecs[0].clockRate
    log(f"audio: {injector.audio_packets} packets sent (pt {injector.audio_pt}); "
        f"sending '{args.key}' as pt {te_pt} telephone-event/{te_clock}")
    if args.keys is not None:
        # A menu: the keys in turn, then listen, then hang up ourselves; the TAS must not hang up first.
        for key in args.keys:
            await injector.send_dtmf(key, te_pt, te_clock, audio_clock)
            await asyncio.sleep(0.15)
        log(f"keys {args.keys!r} sent; listening {args.listen:.0f} s")
        try:
            await asyncio.wait_for(bye_event.wait(), args.listen)
            log(f"FAIL: the TAS hung up after the keys {args.keys!r}")
            return await finish(EXIT_SIP, False)
        except asyncio.TimeoutError:
            pass
        log("OK: the keys were taken; hanging up")
        return await finish(EXIT_OK, True)
    dtmf_sent = time.monotonic()
    timestamp, sent = await injector.send_dtmf(args.key, te_pt, te_clock, audio_clock)
    log(f"'{args.key}' sent: timestamp {timestamp}, packets (seq, M, E, duration) {sent}; "
        f"{injector.held_back} audio packets held back; sequence {args.sequence}")

    try:
        await asyncio.wait_for(bye_event.wait(), args.timeout)
    except asyncio.TimeoutError:
        log(f"FAIL: no BYE from the TAS within {args.timeout:.0f} s of '{args.key}'")
        return await finish(EXIT_NO_BYE, True)
    log(f"BYE from the TAS {bye_at - dtmf_sent:.2f} s after '{args.key}' (answered 200)")
    if problems and not args.lenient:
        log("FAIL: the recording ended, but the answer was wrong (see PROBLEM lines; --lenient ignores them)")
        return await finish(EXIT_NO_DTMF, False)
    log("OK: the recording ended on '#'")
    return await finish(EXIT_OK, False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="127.0.0.1:27060", help="the TAS's SIP/TCP host:port")
    parser.add_argument("--uri", default="sip:+254799990001@127.0.0.1;user=phone",
                        help="Request-URI (MT prefix after the '+')")
    parser.add_argument("--from", dest="from_uri", default="sip:+4711111111@gw.ringer.invalid;user=phone")
    parser.add_argument("--to", default=None, help="To URI (default: the Request-URI without parameters)")
    parser.add_argument("--codec", default="ALL", type=str.upper, choices=["ALL", "PCMA", "PCMU", "OPUS"],
                        help="offer only this audio codec (telephone-event/48000 and /8000 always)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the final response, for ICE/DTLS, and for the BYE after '#'")
    parser.add_argument("--tone", type=float, default=3.0,
                        help="seconds of tone after DTLS is up before '#' (ringer's greeting and beep last ~1.6 s)")
    parser.add_argument("--frequency", type=float, default=1000.0)
    parser.add_argument("--key", default="#", choices=sorted(DTMF_EVENT))
    parser.add_argument("--keys", default=None,
                        help="a menu's keys (0-9, *, #) sent in turn instead of --key; then --listen seconds, then our BYE")
    parser.add_argument("--listen", type=float, default=10.0,
                        help="with --keys: seconds to stay in the call after them (the TAS must not hang up)")
    parser.add_argument("--sequence", default="shared", choices=["shared", "separate"],
                        help="telephone-event RTP sequence numbers: continue the audio's, or a random separate run")
    parser.add_argument("--lenient", action="store_true",
                        help="exit 0 on the BYE even if the answer had problems (a telephone-event must still be answered)")
    parser.add_argument("--te-override", metavar="PT/CLOCK", default=None,
                        help="DIAGNOSTIC: send the event with this payload type and clock instead of the answer's")
    parser.add_argument("--ice-host", default="127.0.0.1", help="the only local ICE host candidate")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the offer too")
    args = parser.parse_args()
    try:
        sys.exit(asyncio.run(run(args)))
    except KeyboardInterrupt:
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
