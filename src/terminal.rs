//! Colored tokens for the terminal (24-bit ANSI backgrounds).

use tokenlens::{Explanation, Method};

/// Background for a score in [-1, 1]: white to red for positive, white to blue for negative.
fn color(v: f32) -> (u8, u8, u8) {
    let v = v.clamp(-1.0, 1.0);
    let fade = |t: f32| (255.0 * (1.0 - t)) as u8;
    if v >= 0.0 {
        (255, fade(v), fade(v))
    } else {
        (fade(-v), fade(-v), 255)
    }
}

fn visible(text: &str) -> String {
    text.replace('\n', "↵\n").replace('\t', "→")
}

/// Prints the prediction, the target and each method's colored tokens.
pub fn print(ex: &Explanation) {
    let p = &ex.prediction.best;
    println!(
        "prediction: {:?} (id {}, logit {:.3}, p {:.3})",
        p.text, p.id, p.logit, p.prob
    );
    let t = &ex.target;
    println!(
        "target:     {:?} (id {}, logit {:.3}, p {:.3}, rank {})",
        t.token.text, t.token.id, t.token.logit, t.token.prob, t.rank
    );
    for (name, result) in &ex.methods {
        let max = result.scores.iter().fold(0f32, |m, v| m.max(v.abs()));
        let signed = Method::from_name(name).is_some_and(|m| m.is_signed());
        println!("\n{name}{}:", if signed { " (red +, blue −)" } else { "" });
        let mut line = String::new();
        for (tok, s) in ex.tokens.iter().zip(&result.scores) {
            let v = if max > 0.0 { s / max } else { 0.0 };
            let (r, g, b) = color(v);
            line.push_str(&format!(
                "\x1b[48;2;{r};{g};{b}m\x1b[38;2;0;0;0m{}\x1b[0m",
                visible(&tok.text)
            ));
        }
        println!("{line}");
        if let Some(c) = &result.conservation {
            println!(
                "conservation: input {:.3}, last layer {:.3} of the target logit",
                c.input, c.last_layer
            );
        }
    }
}
