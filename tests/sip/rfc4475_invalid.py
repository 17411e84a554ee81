"""RFC 4475 messages that must be rejected (3.1.2, 3.1.3, 3.1.4), with expected errors.

Each entry maps a name to ``(message, status, problem fragment)``; the problem fragment is
a substring of :attr:`SipParseError.problem`.
"""

from __future__ import annotations

from .rfc4475 import crlf, sdp

_INVITE_TAIL = "Content-Type: application/sdp\n"

INVALID: dict[str, tuple[bytes, int, str]] = {
    # 3.1.2.1 Extraneous Header Field Separators
    "badinv01": (
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            "To: sip:j.user@example.com\n"
            "From: sip:caller@example.net;tag=134161461246\n"
            "Max-Forwards: 7\n"
            "Call-ID: badinv01.0ha0isndaksdjasdf3234nas\n"
            "CSeq: 8 INVITE\n"
            "Via: SIP/2.0/UDP 192.0.2.15;;,;,,\n"
            'Contact: "Joe" <sip:joe@example.org>;;;;\n'
            "Content-Length: 152\n" + _INVITE_TAIL + "\n" + sdp("192.0.2.15")
        ),
        400,
        "Via",
    ),
    # 3.1.2.2 Content Length Larger Than Message
    "clerr": (
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            "Max-Forwards: 80\n"
            "To: sip:j.user@example.com\n"
            "From: sip:caller@example.net;tag=93942939o2\n"
            "Contact: <sip:caller@hungry.example.net>\n"
            "Call-ID: clerr.0ha0isndaksdjweiafasdk3\n"
            "CSeq: 8 INVITE\n"
            "Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 9999\n"
            "\n" + sdp("192.0.2.155")
        ),
        400,
        "Content-Length",
    ),
    # 3.1.2.3 Negative Content-Length
    "ncl": (
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            "Max-Forwards: 254\n"
            "To: sip:j.user@example.com\n"
            "From: sip:caller@example.net;tag=32394234\n"
            "Call-ID: ncl.0ha0isndaksdj2193423r542w35\n"
            "CSeq: 0 INVITE\n"
            "Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw\n"
            "Contact: <sip:caller@example53.example.net>\n"
            "Content-Type: application/sdp\n"
            "Content-Length: -999\n"
            "\n" + sdp("192.0.2.53")
        ),
        400,
        "Content-Length",
    ),
    # 3.1.2.4 Request Scalar Fields with Overlarge Values
    "scalar02": (
        crlf(
            "REGISTER sip:example.com SIP/2.0\n"
            "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3\n"
            "To: <sip:user@example.com>\n"
            "From: <sip:user@example.com>;tag=239232jh3\n"
            "CSeq: 36893488147419103232 REGISTER\n"
            "Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32\n"
            "Max-Forwards: 300\n"
            "Expires: 1" + "0" * 100 + "\n"
            "Contact: <sip:user@host129.example.com>;expires=280297596632815\n"
            "Content-Length: 0\n"
            "\n"
        ),
        400,
        "CSeq",
    ),
    # 3.1.2.5 Response Scalar Fields with Overlarge Values
    "scalar1184": (
        crlf(
            "SIP/2.0 503 Service Unavailable\n"
            "Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129\n"
            "To: <sip:user@example.com>\n"
            "From: <sip:other@example.net>;tag=2easdjfejw\n"
            "CSeq: 9292394834772304023312 OPTIONS\n"
            "Call-ID: scalar1184.0dkdk4k3j4jh4ngj\n"
            "Retry-After: 949302838503028349304023988\n"
            'Warning: 1812 overture "In Progress"\n'
            "Content-Length: 0\n"
            "\n"
        ),
        400,
        "CSeq",
    ),
    # 3.1.2.6 Unterminated Quoted String in Display Name
    "quotbal": (
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            'To: "Mr. J. User <sip:j.user@example.com>\n'
            "From: sip:caller@example.net;tag=93334\n"
            "Max-Forwards: 10\n"
            "Call-ID: quotbal.aksdj\n"
            "Contact: <sip:caller@host59.example.net>\n"
            "CSeq: 8 INVITE\n"
            "Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 152\n"
            "\n" + sdp("192.0.2.15")
        ),
        400,
        "To",
    ),
    # 3.1.2.7 <> Enclosing Request-URI
    "ltgtruri": (
        crlf(
            "INVITE <sip:user@example.com> SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.net;tag=39291\n"
            "Max-Forwards: 23\n"
            "Call-ID: ltgtruri.1@192.0.2.5\n"
            "CSeq: 1 INVITE\n"
            "Via: SIP/2.0/UDP 192.0.2.5\n"
            "Contact: <sip:caller@host5.example.net>\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 150\n"
            "\n" + sdp("192.0.2.5")
        ),
        400,
        "Request-URI",
    ),
    # 3.1.2.8 Malformed SIP Request-URI (embedded LWS)
    "lwsruri": (
        crlf(
            "INVITE sip:user@example.com; lr SIP/2.0\n"
            "To: sip:user@example.com;tag=3xfe-9921883-z9f\n"
            "From: sip:caller@example.net;tag=231413434\n"
            "Max-Forwards: 5\n"
            "Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423\n"
            "CSeq: 2130706432 INVITE\n"
            "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395\n"
            "Contact: <sip:caller@host1.example.net>\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 150\n"
            "\n" + sdp("192.0.2.1")
        ),
        400,
        "Request-Line",
    ),
    # 3.1.2.9 Multiple SP Separating Request-Line Elements
    "lwsstart": (
        crlf(
            "INVITE  sip:user@example.com  SIP/2.0\n"
            "Max-Forwards: 8\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.net;tag=8814\n"
            "Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com\n"
            "CSeq: 1893884 INVITE\n"
            "Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923\n"
            "Contact: <sip:caller@host1.example.net>\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 150\n"
            "\n" + sdp("192.0.2.1")
        ),
        400,
        "Request-Line",
    ),
    # 3.1.2.10 SP Characters at End of Request-Line
    "trws": (
        crlf(
            "OPTIONS sip:remote-target@example.com SIP/2.0  \n"
            "Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093\n"
            "To: <sip:remote-target@example.com>\n"
            "From: <sip:local-resource@example.com>;tag=329429089\n"
            "Call-ID: trws.oicu34958239neffasdhr2345r\n"
            "Accept: application/sdp\n"
            "CSeq: 238923 OPTIONS\n"
            "Max-Forwards: 70\n"
            "Content-Length: 0\n"
            "\n"
        ),
        400,
        "Request-Line",
    ),
    # 3.1.2.11 Escaped Headers in SIP Request-URI
    "escruri": (
        crlf(
            "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.net;tag=341518\n"
            "Max-Forwards: 7\n"
            "Contact: <sip:caller@host39923.example.net>\n"
            "Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5\n"
            "CSeq: 149209342 INVITE\n"
            "Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 150\n"
            "\n" + sdp("192.0.2.1")
        ),
        400,
        "Request-URI",
    ),
    # 3.1.2.12 Invalid Time Zone in Date Header Field
    "baddate": (
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.net;tag=2234923\n"
            "Max-Forwards: 70\n"
            "Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234\n"
            "CSeq: 1392934 INVITE\n"
            "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\n"
            "Date: Fri, 01 Jan 2010 16:00:00 EST\n"
            "Contact: <sip:caller@host5.example.net>\n"
            "Content-Type: application/sdp\n"
            "Content-Length: 150\n"
            "\n" + sdp("192.0.2.5")
        ),
        400,
        "Date",
    ),
    # 3.1.2.13 Failure to Enclose name-addr URI in <>
    "regbadct": (
        crlf(
            "REGISTER sip:example.com SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:user@example.com;tag=998332\n"
            "Max-Forwards: 70\n"
            "Call-ID: regbadct.k345asrl3fdbv@10.0.0.1\n"
            "CSeq: 1 REGISTER\n"
            "Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw\n"
            "Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\n"
            "l: 0\n"
            "\n"
        ),
        400,
        "Contact",
    ),
    # 3.1.2.14 Spaces within addr-spec
    "badaspec": (
        crlf(
            "OPTIONS sip:user@example.org SIP/2.0\n"
            "Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234\n"
            "Max-Forwards: 70\n"
            'From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423\n'
            'To: "Watson, Thomas" < sip:t.watson@example.org >\n'
            "Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3\n"
            "Accept: application/sdp\n"
            "CSeq: 3923239 OPTIONS\n"
            "l: 0\n"
            "\n"
        ),
        400,
        "To",
    ),
    # 3.1.2.15 Non-token Characters in Display Name
    "baddn": (
        crlf(
            "OPTIONS sip:t.watson@example.org SIP/2.0\n"
            "Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw\n"
            "Max-Forwards:      70\n"
            "From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43\n"
            "To:      Watson, Thomas <sip:t.watson@example.org>\n"
            "Call-ID: baddn.31415@c.example.com\n"
            "Accept: application/sdp\n"
            "CSeq:    3923239 OPTIONS\n"
            "l: 0\n"
            "\n"
        ),
        400,
        "From",
    ),
    # 3.1.2.16 Unknown Protocol Version
    "badvers": (
        crlf(
            "OPTIONS sip:t.watson@example.org SIP/7.0\n"
            "Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw\n"
            "Max-Forwards:     70\n"
            "From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe\n"
            "To:      T. Watson <sip:t.watson@example.org>\n"
            "Call-ID: badvers.31417@c.example.com\n"
            "CSeq:    1 OPTIONS\n"
            "l: 0\n"
            "\n"
        ),
        505,
        "SIP/7.0",
    ),
    # 3.1.2.17 Start Line and CSeq Method Mismatch
    "mismatch01": (
        crlf(
            "OPTIONS sip:user@example.com SIP/2.0\n"
            "To: sip:j.user@example.com\n"
            "From: sip:caller@example.net;tag=34525\n"
            "Max-Forwards: 6\n"
            "Call-ID: mismatch01.dj0234sxdfl3\n"
            "CSeq: 8 INVITE\n"
            "Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw\n"
            "l: 0\n"
            "\n"
        ),
        400,
        "CSeq method",
    ),
    # 3.1.2.18 Unknown Method with CSeq Method Mismatch
    "mismatch02": (
        crlf(
            "NEWMETHOD sip:user@example.com SIP/2.0\n"
            "To: sip:j.user@example.com\n"
            "From: sip:caller@example.net;tag=34525\n"
            "Max-Forwards: 6\n"
            "Call-ID: mismatch02.dj0234sxdfl3\n"
            "CSeq: 8 INVITE\n"
            "Contact: <sip:caller@host.example.net>\n"
            "Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw\n"
            "Content-Type: application/sdp\n"
            "l: 138\n"
            "\n"
            "v=0\n"
            "o=mhandley 29739 7272939 IN IP4 192.0.2.1\n"
            "c=IN IP4 192.0.2.1\n"
            "m=audio 49217 RTP/AVP 0 12\n"
            "m=video 3227 RTP/AVP 31\n"
            "a=rtpmap:31 LPC\n"
        ),
        400,
        "CSeq method",
    ),
    # 3.1.2.19 Overlarge Response Code
    "bigcode": (
        crlf(
            "SIP/2.0 4294967301 better not break the receiver\n"
            "Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\n"
            "Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i\n"
            "CSeq: 353494 INVITE\n"
            "From: <sip:user@example.com>;tag=39ansfi3\n"
            "To: <sip:user@example.edu>;tag=902jndnke3\n"
            "Content-Length: 0\n"
            "Contact: <sip:user@host105.example.com>\n"
            "\n"
        ),
        400,
        "Status-Code",
    ),
    # 3.1.3.1 Missing Transaction Identifier
    "badbranch": (
        crlf(
            "OPTIONS sip:user@example.com SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.org;tag=33242\n"
            "Max-Forwards: 3\n"
            "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK\n"
            "Accept: application/sdp\n"
            "Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n\n"
            "CSeq: 8 OPTIONS\n"
            "l: 0\n"
            "\n"
        ),
        400,
        "branch",
    ),
    # 3.1.4.1 Missing Required Header Fields
    "insuf": (
        crlf(
            "INVITE sip:user@example.com SIP/2.0\n"
            "CSeq: 193942 INVITE\n"
            "Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\n"
            "Content-Type: application/sdp\n"
            "l: 152\n"
            "\n" + sdp("192.0.2.95")
        ),
        400,
        "Missing To, From, Call-ID",
    ),
    # 3.1.4.2 Request-URI with Unknown Scheme
    "unkscm": (
        crlf(
            "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.net;tag=384\n"
            "Max-Forwards: 3\n"
            "Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34\n"
            "CSeq: 3923423 OPTIONS\n"
            "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\n"
            "Content-Length: 0\n"
            "\n"
        ),
        416,
        "nobodyKnowsThisScheme",
    ),
    # 3.1.4.3 Request-URI with Known but Atypical Scheme
    "novelsc": (
        crlf(
            "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0\n"
            "To: sip:user@example.com\n"
            "From: sip:caller@example.net;tag=384\n"
            "Max-Forwards: 3\n"
            "Call-ID: novelsc.asdfasser0q239nwsdfasdkl34\n"
            "CSeq: 3923423 OPTIONS\n"
            "Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234\n"
            "Content-Length: 0\n"
            "\n"
        ),
        416,
        "soap.beep",
    ),
    # 3.1.4.5 Proxy-Require and Require
    "bext01": (
        crlf(
            "OPTIONS sip:user@example.com SIP/2.0\n"
            "To: sip:j_user@example.com\n"
            "From: sip:caller@example.net;tag=242etr\n"
            "Max-Forwards: 6\n"
            "Call-ID: bext01.0ha0isndaksdj\n"
            "Require: nothingSupportsThis, nothingSupportsThisEither\n"
            "Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis\n"
            "CSeq: 8 OPTIONS\n"
            "Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw\n"
            "Content-Length: 0\n"
            "\n"
        ),
        420,
        "nothingSupportsThis, nothingSupportsThisEither",
    ),
    # 3.1.4.8 Multiple Values in Single Value Required Fields
    "multi01": (
        crlf(
            "INVITE sip:user@company.com SIP/2.0\n"
            "Contact: <sip:caller@host25.example.net>\n"
            "Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw\n"
            "Max-Forwards: 70\n"
            "CSeq: 5 INVITE\n"
            "Call-ID: multi01.98asdh@192.0.2.1\n"
            "CSeq: 59 INVITE\n"
            "Call-ID: multi01.98asdh@192.0.2.2\n"
            "From: sip:caller@example.com;tag=3413415\n"
            "To: sip:user@example.com\n"
            "To: sip:other@example.net\n"
            "From: sip:caller@example.net;tag=2923420123\n"
            "Content-Type: application/sdp\n"
            "l: 152\n"
            "Contact: <sip:caller@host36.example.net>\n"
            "Max-Forwards: 5\n"
            "\n" + sdp("192.0.2.25")
        ),
        400,
        "Multiple",
    ),
    # 3.1.4.9 Multiple Content-Length Values
    "mcl01": (
        crlf(
            "OPTIONS sip:user@example.com SIP/2.0\n"
            "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423\n"
            "To: <sip:user@example.com>\n"
            "From: <sip:other@example.net>;tag=3923942\n"
            "Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf\n"
            "CSeq: 15932 OPTIONS\n"
            "Content-Length: 13\n"
            "Max-Forwards: 60\n"
            "Content-Length: 5\n"
            "Content-Type: text/plain\n"
            "\n"
            "There's no way to know how many octets are supposed to be here.\n"
        ),
        400,
        "Content-Length",
    ),
}
