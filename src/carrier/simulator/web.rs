//! A simulated patient who reports on the web: opens the personal link of a web request, fills
//! the form page by page as a patient would (the same answers as on the phone, by persona) and
//! sends it, over HTTP like a phone's browser. The demo and the campaign benchmark use it.
//!
//! Fields are recognised by their names (`q.{state}`, the flow's states), so a question added
//! to the flow and not known here makes the patient give up (`Err`), as a simulated caller hangs
//! up on a question it does not recognise.

use super::Persona;

/// What the patient answers to a question of the daily flow, by the field's state name.
fn answer(persona: Persona, state: &str, birth_md: &str) -> Option<String> {
    let app_user = matches!(persona, Persona::AppUser | Persona::LandlineAppUser | Persona::LowSpo2);
    Some(match state {
        "identity" => birth_md.to_string(),
        "temperature" => "36.5".into(),
        "oximeter" => "1".into(),
        "spo2" if persona == Persona::LowSpo2 => "91".into(),
        "spo2" => "97".into(),
        "breathless" | "cough" | "fatigue" | "taste_smell" | "trend" => "2".into(),
        "app_use" if app_user => "1".into(),
        "app_use" => "2".into(),
        "consent" => "1".into(),
        _ => return None,
    })
}

/// The value of the form's hidden field `name` on a page.
fn hidden(page: &str, name: &str) -> Option<String> {
    let key = format!("name=\"{name}\" value=\"");
    let at = page.find(&key)? + key.len();
    Some(page[at..].split('"').next()?.to_string())
}

/// The names of the form's question fields on a page (`q.…`), each once, in order.
fn questions(page: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for part in page.split("name=\"q.").skip(1) {
        if let Some(name) = part.split('"').next()
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_string());
        }
    }
    names
}

/// Fills and sends the report at `url` (`…/r/{token}`). Returns when the page says it was sent.
pub async fn report(client: &reqwest::Client, url: &str, persona: Persona, birth_md: &str) -> Result<(), String> {
    let fetch = |r: reqwest::RequestBuilder| async move {
        let resp = r.send().await.map_err(|e| e.without_url().to_string())?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.without_url().to_string())?;
        if status.is_success() { Ok(text) } else { Err(format!("the report page answered {status}")) }
    };
    let mut page = fetch(client.get(url)).await?;
    let round = hidden(&page, "round").ok_or("no report form on the page")?;
    let mut form: Vec<(String, String)> = vec![("round".into(), round)];
    for _ in 0..20 {
        if page.contains("name=\"step\" value=\"send\"") {
            form.push(("step".into(), "send".into()));
            fetch(client.post(url).form(&form)).await?;
            return Ok(());
        }
        let at = hidden(&page, "page").ok_or("no page number on the form")?;
        for name in questions(&page) {
            if form.iter().any(|(k, _)| k == &format!("q.{name}")) {
                continue;
            }
            let value = answer(persona, &name, birth_md).ok_or_else(|| format!("an unknown question: {name}"))?;
            form.push((format!("q.{name}"), value));
        }
        let mut sent = form.clone();
        sent.push(("page".into(), at));
        sent.push(("step".into(), "next".into()));
        page = fetch(client.post(url).form(&sent)).await?;
    }
    Err("the form never came to its review step".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_of_a_page_are_read_once_each() {
        let page = r#"<input type="hidden" name="round" value="2026-11-25.0"><input type="radio" name="q.cough" value="1">
            <input type="radio" name="q.cough" value="2"><input name="q.spo2" inputmode="numeric">"#;
        assert_eq!(questions(page), ["cough", "spo2"]);
        assert_eq!(hidden(page, "round").as_deref(), Some("2026-11-25.0"));
        assert_eq!(answer(Persona::LowSpo2, "spo2", "0412").as_deref(), Some("91"));
        assert_eq!(answer(Persona::NotAppUser, "app_use", "0412").as_deref(), Some("2"));
        assert_eq!(answer(Persona::AppUser, "identity", "0412").as_deref(), Some("0412"));
    }
}
