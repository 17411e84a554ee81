"""Real-world style SDP offers used by the SDP and offer/answer tests."""

from __future__ import annotations


def crlf(text: str) -> bytes:
    """Join indented sample lines with CRLF, as they travel in a SIP body."""
    lines = [line.strip() for line in text.strip().splitlines()]
    return ("\r\n".join(lines) + "\r\n").encode()


# Linphone / baresip style: opus first, dynamic PTs, rtcp-mux, ICE-ish extras we must keep.
SOFTPHONE = crlf("""
    v=0
    o=alice 3724394400 3724394405 IN IP4 192.168.1.20
    s=Talk
    c=IN IP4 192.168.1.20
    b=AS:380
    t=0 0
    a=ice-pwd:31ec21eb38b2ec6d36e8dc7b
    a=ice-ufrag:1f7d2c05
    a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
    m=audio 7078 RTP/AVP 96 0 8 101 97
    a=rtpmap:96 opus/48000/2
    a=fmtp:96 useinbandfec=1
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-15
    a=rtpmap:97 telephone-event/48000
    a=rtcp:7079
    a=rtcp-mux
    a=rtcp-fb:* trr-int 1000
    a=candidate:1 1 UDP 2130706431 192.168.1.20 7078 typ host
    a=sendrecv
    m=video 9078 RTP/AVP 96
    a=rtpmap:96 VP8/90000
    a=rtcp-fb:* ccm fir
""")

# A carrier trunk: static payload types only, no rtpmap for 0, 8, 18.
CARRIER = crlf("""
    v=0
    o=- 1690000000 1690000000 IN IP4 203.0.113.5
    s=SBC call
    c=IN IP4 203.0.113.5
    t=0 0
    m=audio 30000 RTP/AVP 18 0 8 101
    a=rtpmap:101 telephone-event/8000
    a=fmtp:101 0-16
    a=fmtp:18 annexb=no
    a=ptime:20
    a=maxptime:40
""")

# Cisco-style: fmtp for a dynamic type that never got an rtpmap, and static PCMA.
CISCO = crlf("""
    v=0
    o=CiscoSystemsSIP-GW-UserAgent 2506 5539 IN IP4 10.0.0.9
    s=SIP Call
    c=IN IP4 10.0.0.9
    t=0 0
    m=audio 16444 RTP/AVP 8 100
    c=IN IP4 10.0.0.10
    a=fmtp:100 0-15
    a=ptime:30
""")

# Audio plus a T.38 fax stream offered on a real port.
AUDIO_T38 = crlf("""
    v=0
    o=fax 1 1 IN IP4 198.51.100.7
    s=-
    c=IN IP4 198.51.100.7
    t=0 0
    m=audio 40000 RTP/AVP 0 101
    a=rtpmap:101 telephone-event/8000
    m=image 40002 udptl t38
    a=T38FaxVersion:0
    a=T38FaxRateManagement:transferredTCF
""")

# Session-level sendonly: the offerer puts us on hold.
HOLD_SESSION = crlf("""
    v=0
    o=bob 99 100 IN IP4 192.0.2.33
    s=-
    c=IN IP4 192.0.2.33
    t=0 0
    a=sendonly
    m=audio 5004 RTP/AVP 8 0
""")

# RFC 2543 hold: connection address 0.0.0.0.
HOLD_NULL_C = crlf("""
    v=0
    o=bob 99 101 IN IP4 192.0.2.33
    s=-
    c=IN IP4 0.0.0.0
    t=0 0
    m=audio 5004 RTP/AVP 0
""")

# Only codecs we do not have.
NO_COMMON = crlf("""
    v=0
    o=bob 99 101 IN IP4 192.0.2.33
    s=-
    c=IN IP4 192.0.2.33
    t=0 0
    m=audio 5004 RTP/AVP 18 4 101
    a=rtpmap:101 telephone-event/8000
""")
