//! Did-you-mean: the known agent id nearest to one nobody holds.

use agency_runtime::Space;

/// For a message to `id` that no agent holds: the id of an agent of `space` it was maybe
/// meant for.
pub fn did_you_mean(space: &Space, id: &str) -> Option<String> {
    closest(id, &space.agent_ids()).map(str::to_owned)
}

/// Of `ids`, the one most like `wanted` (ignoring case, at most two edits away), for a
/// did-you-mean.
pub fn closest<'a>(wanted: &str, ids: &'a [String]) -> Option<&'a str> {
    let wanted: Vec<char> = wanted.to_lowercase().chars().collect();
    ids.iter()
        .map(|id| {
            let id_chars: Vec<char> = id.to_lowercase().chars().collect();
            (edit_distance(&wanted, &id_chars), id.as_str())
        })
        .filter(|&(distance, _)| distance <= 2)
        .min_by_key(|&(distance, _)| distance)
        .map(|(_, id)| id)
}

/// How many insertions, deletions and substitutions turn `a` into `b` (Levenshtein).
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::{closest, edit_distance};

    #[test]
    fn did_you_mean_takes_the_nearest_id_within_two_edits() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(edit_distance(&chars("kitten"), &chars("sitting")), 3);
        assert_eq!(edit_distance(&chars(""), &chars("ab")), 2);
        let ids = [
            "Calculator".to_owned(),
            "Chatty".to_owned(),
            "Host".to_owned(),
        ];
        assert_eq!(closest("calculator", &ids), Some("Calculator"));
        assert_eq!(closest("Calculater", &ids), Some("Calculator"));
        assert_eq!(closest("Chat", &ids), Some("Chatty"));
        assert_eq!(closest("Weather", &ids), None);
    }
}
