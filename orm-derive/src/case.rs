//! Name helpers: snake case and edit distance for "did you mean" hints.

/// `PersonProject` -> `person_project`.
pub fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, ch) in name.char_indices() {
        if ch.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// The candidate closest to `word`, if it is a plausible typo of it.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb { diagonal } else { 1 + diagonal.min(above).min(row[j]) };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake() {
        assert_eq!(snake_case("PersonProject"), "person_project");
        assert_eq!(snake_case("Person"), "person");
    }

    #[test]
    fn near_misses() {
        let keys = ["foreign_key", "join_depth", "lazy", "through"];
        assert_eq!(did_you_mean("foriegn_key", &keys), Some("foreign_key"));
        assert_eq!(did_you_mean("lazzy", &keys), Some("lazy"));
        assert_eq!(did_you_mean("colour", &keys), None);
    }
}
