#!/usr/bin/env python3
"""Writes TwiML fixtures with Twilio's official helper library (PyPI `twilio`).

The Rust interop test (tests/api/twiml_interop.rs) checks that `ivr::twiml::parse` reads each
fixture as the verbs it expects, and that `ivr::twiml::render` of those verbs is the same
document. Each case below has a twin, with the same name, in that test.

Run from the repository root:

    python3 -m pip install twilio
    python3 scripts/twiml-fixtures.py [OUTPUT_DIR]

OUTPUT_DIR defaults to tests/fixtures/twiml. Each case is written to OUTPUT_DIR/NAME.xml exactly
as `VoiceResponse.to_xml()` returns it (no trailing newline) and printed. The output depends only
on the library, so re-running it must leave the committed fixtures unchanged.
"""

import os
import sys

from twilio.twiml.voice_response import Gather, VoiceResponse

STEP = "https://ivr.example.jp/twilio/voice/step"


def menu_gather_ja():
    r = VoiceResponse()
    g = Gather(
        input="dtmf",
        action=f"{STEP}?call=CA123&seq=1",
        method="POST",
        timeout=5,
        num_digits=1,
        finish_on_key="#",
        action_on_empty_result=True,
    )
    g.say(
        "接触確認アプリをお使いの方は1を、お使いでない方は2を押してください。",
        language="ja-JP",
        voice="Polly.Mizuki",
    )
    g.pause(length=1)
    g.say("もう一度お伝えします。", language="ja-JP", voice="Polly.Mizuki")
    r.append(g)
    return r


def number_gather():
    r = VoiceResponse()
    g = Gather(
        input="dtmf",
        action=f"{STEP}?call=CA123&seq=2",
        method="POST",
        timeout=10,
        num_digits=3,
        finish_on_key="#",
    )
    g.say(
        "今朝の体温を押してください。36度8分なら、3、6、8です。",
        language="ja-JP",
        voice="Polly.Mizuki",
    )
    r.append(g)
    return r


def gather_no_finish_key():
    r = VoiceResponse()
    g = Gather(
        input="dtmf",
        action=f"{STEP}?call=CA123&seq=3",
        method="POST",
        timeout=7,
        finish_on_key="",
    )
    g.play("https://cdn.example.jp/prompts/ja-JP/spo2.mp3")
    r.append(g)
    return r


def play_query_url():
    r = VoiceResponse()
    r.play("https://cdn.example.jp/prompts/ja-JP/welcome.mp3?v=3&sig=ab%2Fcd")
    return r


def pause():
    r = VoiceResponse()
    r.say("少々お待ちください。", language="ja-JP", voice="Polly.Mizuki")
    r.pause(length=3)
    return r


def redirect():
    r = VoiceResponse()
    r.redirect(f"{STEP}?call=CA123&seq=4", method="POST")
    return r


def say_then_hangup():
    r = VoiceResponse()
    r.say("ご回答ありがとうございました。お大事になさってください。", language="ja-JP", voice="Polly.Mizuki")
    r.hangup()
    return r


def special_characters():
    r = VoiceResponse()
    r.say("1 < 2 & 3 > 2, \"double\" and 'single' quotes </Say>", language="en-US")
    r.play("https://cdn.example.jp/a.mp3?name=\"x\"&lang='ja'&cmp=<2>")
    r.gather(
        input="dtmf",
        action=f"{STEP}?note=\"a\"&who='b'&cmp=<c>",
        method="POST",
        timeout=5,
        finish_on_key="*",
    )
    return r


def dial_centre():
    r = VoiceResponse()
    r.say("保健所の担当者におつなぎします。そのまま、お待ちください。", language="ja-JP", voice="Polly.Mizuki")
    d = r.dial(
        action=f"{STEP}?call=CA123&seq=5",
        method="POST",
        timeout=20,
        caller_id="+815012345678",
    )
    d.number("+81353210001")
    return r


def say_en_us():
    r = VoiceResponse()
    r.say("Please enter your temperature, then press the hash key.", language="en-US")
    return r


CASES = [
    menu_gather_ja,
    number_gather,
    gather_no_finish_key,
    play_query_url,
    pause,
    redirect,
    say_then_hangup,
    special_characters,
    say_en_us,
    dial_centre,
]


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "fixtures", "twiml")
    os.makedirs(out_dir, exist_ok=True)
    for case in CASES:
        xml = case().to_xml()
        path = os.path.join(out_dir, f"{case.__name__}.xml")
        # Bytes as the library produced them: no newline translation, no trailing newline.
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(xml)
        print(f"{path}: {xml}")


if __name__ == "__main__":
    main()
