//! The patients the simulator plays: who answers which number, and how each one answers the
//! questions heard, recognised from the prompt text (ja-JP and en-US catalogues as shipped).

use serde::Serialize;

use crate::twiml::phone::{Heard, Next};
use crate::types::E164;

/// How a simulated patient behaves on the phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Persona {
    /// Answers everything, uses the contact app and consents to a processing number (mobile
    /// numbers ending 0).
    AppUser,
    /// Answers everything, does not use the app (ending 1).
    NotAppUser,
    /// Lets the first question time out once, then answers; machine detection takes this one
    /// for a machine (`machine_start`) though it presses keys (ending 2).
    Slow,
    /// Presses a wrong key once at the first menu, then answers (ending 3).
    WrongKey,
    /// Hangs up halfway, after the SpO2 question (ending 4).
    HangsUp,
    /// Never picks up: `no-answer` after the call's `Timeout` (ending 5).
    NoAnswer,
    /// The line is busy (ending 6).
    Busy,
    /// An answering machine: listens and presses nothing (ending 7).
    Machine,
    /// An app user whose SMS is accepted and then not delivered (30005) (ending 8).
    UndeliverableSms,
    /// Answers everything with a low SpO2, 91 (ending 9).
    LowSpo2,
    /// An app user on a landline: hears the processing number read aloud and presses 2 to
    /// finish (every landline number).
    LandlineAppUser,
    /// Presses 0 at the breathlessness question to speak with someone; the simulated centre
    /// answers (`DialCallStatus` completed) and the call ends there. Set with
    /// [`super::Simulator::set_persona`].
    AsksForPerson,
    /// Presses 0 at the breathlessness question; nobody answers at the simulated centre
    /// (`no-answer`), so the patient hears the hours and 119, and answers the rest. Set with
    /// [`super::Simulator::set_persona`].
    AsksForPersonUnanswered,
}

impl Persona {
    /// The persona that answers `to`: every landline is a [`Persona::LandlineAppUser`]; a
    /// mobile number is chosen by its last digit (see the variants).
    pub fn for_number(to: &E164) -> Persona {
        if !to.is_mobile() {
            return Persona::LandlineAppUser;
        }
        match to.as_str().chars().last() {
            Some('1') => Persona::NotAppUser,
            Some('2') => Persona::Slow,
            Some('3') => Persona::WrongKey,
            Some('4') => Persona::HangsUp,
            Some('5') => Persona::NoAnswer,
            Some('6') => Persona::Busy,
            Some('7') => Persona::Machine,
            Some('8') => Persona::UndeliverableSms,
            Some('9') => Persona::LowSpo2,
            _ => Persona::AppUser,
        }
    }

    /// The name used in records and logs (`app_user`, `no_answer`…).
    pub fn as_str(self) -> &'static str {
        match self {
            Persona::AppUser => "app_user",
            Persona::NotAppUser => "not_app_user",
            Persona::Slow => "slow",
            Persona::WrongKey => "wrong_key",
            Persona::HangsUp => "hangs_up",
            Persona::NoAnswer => "no_answer",
            Persona::Busy => "busy",
            Persona::Machine => "machine",
            Persona::UndeliverableSms => "undeliverable_sms",
            Persona::LowSpo2 => "low_spo2",
            Persona::LandlineAppUser => "landline_app_user",
            Persona::AsksForPerson => "asks_for_person",
            Persona::AsksForPersonUnanswered => "asks_for_person_unanswered",
        }
    }

    /// How a `<Dial>` this persona's call is put through with ends at the simulated centre.
    pub fn centre_answer(self) -> &'static str {
        match self {
            Persona::AsksForPerson => "completed",
            _ => "no-answer",
        }
    }

    fn uses_app(self) -> bool {
        !matches!(self, Persona::NotAppUser)
    }
}

/// A question of the daily health check, as a patient recognises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Question {
    Identity,
    Temperature,
    Oximeter,
    Spo2,
    Breathless,
    Cough,
    Fatigue,
    TasteSmell,
    Trend,
    AppUse,
    Consent,
    /// The processing number read aloud (1 again, 2 finish, 3 by SMS).
    NumberReadAloud,
    /// "… is that right? 1 yes, 2 enter again".
    Confirm,
    /// The message left on an answering machine; a person who hears it presses a key.
    MachineMessage,
}

/// Words of each question in the shipped prompts, Japanese and English. Distinctive enough
/// that no question's words occur in another prompt.
const KEYWORDS: &[(Question, &[&str])] = &[
    (Question::Identity, &["生年月日の月と日", "month and day of your birth"]),
    (Question::Temperature, &["本日の体温", "today's temperature"]),
    (Question::Oximeter, &["オキシメーターをお持ち", "If you have a pulse oximeter"]),
    (Question::Spo2, &["酸素飽和度の数値", "oxygen saturation shown"]),
    (Question::Breathless, &["息苦しさはありますか", "Are you short of breath"]),
    (Question::Cough, &["せきは出ていますか", "Do you have a cough"]),
    (Question::Fatigue, &["強いだるさ", "feel very tired"]),
    (Question::TasteSmell, &["味やにおい", "sense of taste or smell"]),
    (Question::Trend, &["昨日と比べて", "Compared with yesterday"]),
    (Question::AppUse, &["接触確認アプリをご利用", "If you use the contact confirmation app"]),
    (Question::Consent, &["処理番号の発行を希望", "To receive a processing number"]),
    (Question::NumberReadAloud, &["処理番号は、", "Your processing number is"]),
    (Question::Confirm, &["正しければ1", "If that is correct, press 1"]),
    (Question::MachineMessage, &["改めてお電話いたします", "We will call again later"]),
];

/// The question a document asks: of the questions whose words were heard, the one heard last
/// (an apology or a notice may come before it in the same document).
pub fn recognise(speech: &[String]) -> Option<Question> {
    let text = speech.concat();
    KEYWORDS
        .iter()
        .filter_map(|(q, words)| words.iter().filter_map(|w| text.rfind(w)).max().map(|at| (at, *q)))
        .max_by_key(|(at, _)| *at)
        .map(|(_, q)| q)
}

/// One patient on one call: answers questions as its persona does, remembering what it did
/// so far (a slow patient is slow once, a wrong key is pressed once).
#[derive(Debug, Clone)]
pub struct Patient {
    pub persona: Persona,
    /// Birth month and day, four digits, for the identity question.
    pub birth_md: String,
    questions: usize,
    wrong_key_pressed: bool,
    spo2_answered: bool,
    asked_for_person: bool,
    /// A question this patient did not recognise, once it hung up on it.
    pub unrecognised: Option<String>,
}

/// What a patient does at one gather.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Presses these keys.
    Keys(String),
    /// Says nothing and lets the gather time out.
    Silence,
    /// Hangs up.
    HangUp,
}

impl Patient {
    pub fn new(persona: Persona, birth_md: impl Into<String>) -> Self {
        Patient {
            persona,
            birth_md: birth_md.into(),
            questions: 0,
            wrong_key_pressed: false,
            spo2_answered: false,
            asked_for_person: false,
            unrecognised: None,
        }
    }

    /// What the patient does after hearing `heard` (only gathers are answered).
    pub fn reply(&mut self, heard: &Heard) -> Reply {
        if !matches!(heard.next, Next::Gather { .. }) {
            return Reply::HangUp;
        }
        if recognise(&heard.speech) == Some(Question::MachineMessage) {
            // Detection took this call for a machine: a person presses a key, a machine cannot.
            return if self.persona == Persona::Machine { Reply::Silence } else { Reply::Keys("1".into()) };
        }
        self.questions += 1;
        if self.persona == Persona::Machine {
            return Reply::Silence;
        }
        if self.persona == Persona::Slow && self.questions == 1 {
            return Reply::Silence;
        }
        if self.persona == Persona::HangsUp && self.spo2_answered {
            return Reply::HangUp;
        }
        let Some(question) = recognise(&heard.speech) else {
            self.unrecognised = Some(heard.speech.concat());
            return Reply::HangUp;
        };
        let is_menu = !matches!(
            question,
            Question::Identity | Question::Temperature | Question::Spo2 | Question::Confirm | Question::NumberReadAloud
        );
        let asks = matches!(self.persona, Persona::AsksForPerson | Persona::AsksForPersonUnanswered);
        if asks && question == Question::Breathless && !self.asked_for_person {
            self.asked_for_person = true;
            return Reply::Keys("0".into());
        }
        if self.persona == Persona::WrongKey && is_menu && !self.wrong_key_pressed {
            self.wrong_key_pressed = true;
            return Reply::Keys("9".into());
        }
        Reply::Keys(self.answer(question))
    }

    fn answer(&mut self, question: Question) -> String {
        let yes_no = |yes: bool| if yes { "1" } else { "2" }.to_string();
        match question {
            Question::Identity => self.birth_md.clone(),
            Question::Temperature => "365#".into(),
            Question::Oximeter => "1".into(),
            Question::Spo2 => {
                self.spo2_answered = true;
                if self.persona == Persona::LowSpo2 { "91#" } else { "97#" }.into()
            }
            Question::Breathless | Question::Cough | Question::Fatigue | Question::TasteSmell => "2".into(),
            Question::Trend => "2".into(),
            Question::AppUse => yes_no(self.persona.uses_app()),
            Question::Consent => yes_no(self.persona.uses_app()),
            Question::NumberReadAloud => "2".into(),
            Question::Confirm | Question::MachineMessage => "1".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twiml::Gather;

    fn asked(text: &str) -> Heard {
        let gather = Gather {
            action: "/a".into(),
            timeout: 8,
            num_digits: Some(1),
            finish_on_key: "#".into(),
            action_on_empty_result: true,
            children: vec![],
        };
        Heard { speech: vec![text.into()], next: Next::Gather { gather, after: vec![] } }
    }

    #[test]
    fn numbers_choose_personas_by_kind_and_last_digit() {
        let n = |s: &str| E164::parse(s).unwrap();
        assert_eq!(Persona::for_number(&n("+81312345670")), Persona::LandlineAppUser);
        assert_eq!(Persona::for_number(&n("+819012345670")), Persona::AppUser);
        assert_eq!(Persona::for_number(&n("+819012345672")), Persona::Slow);
        assert_eq!(Persona::for_number(&n("+818012345675")), Persona::NoAnswer);
        assert_eq!(Persona::for_number(&n("+817012345679")), Persona::LowSpo2);
    }

    #[test]
    fn the_last_question_heard_is_the_one_answered() {
        let notice =
            "保健所から、折り返しお電話いたします。息苦しさが強いなど、緊急の場合は、119番に電話してください。";
        let app = "接触確認アプリをご利用の方は１を、ご利用でない方は２を押して下さい。";
        assert_eq!(recognise(&[notice.into(), app.into()]), Some(Question::AppUse));
        assert_eq!(
            recognise(&["36.5度ですね。正しければ1を、入力し直す場合は2を押してください。".into()]),
            Some(Question::Confirm)
        );
        assert_eq!(recognise(&["Do you have a cough? If yes, press 1.".into()]), Some(Question::Cough));
        assert_eq!(recognise(&["Press 5 for the weather.".into()]), None);
    }

    #[test]
    fn a_wrong_key_is_pressed_once_and_an_unknown_question_hangs_up() {
        let mut p = Patient::new(Persona::WrongKey, "0412");
        let oximeter = asked("If you have a pulse oximeter, press 1. If not, press 2.");
        assert_eq!(p.reply(&oximeter), Reply::Keys("9".into()));
        assert_eq!(p.reply(&oximeter), Reply::Keys("1".into()));
        assert_eq!(p.reply(&asked("Press 5 for the weather.")), Reply::HangUp);
        assert!(p.unrecognised.is_some());
    }

    /// The words of every question are in the shipped prompts: a prompt reworded without its
    /// keywords would leave the simulated patients hanging up on it.
    #[test]
    fn every_question_is_recognised_in_the_shipped_prompts() {
        let catalogues = [include_str!("../../../prompts/ja-JP.toml"), include_str!("../../../prompts/en-US.toml")];
        for (question, words) in KEYWORDS {
            for (catalogue, word) in catalogues.iter().zip(words.iter()) {
                assert!(catalogue.contains(word), "{question:?}: '{word}' is not in the prompts");
            }
        }
    }
}
