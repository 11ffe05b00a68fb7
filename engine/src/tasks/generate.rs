//! Multiple-choice items the project makes itself, so they ship with a clear licence and no data
//! set is fetched: arithmetic, weekdays (dates), copying a list of words, and unit conversions.
//! Each task draws its items from a seeded ChaCha stream, so a seed names the same items on
//! every machine; the right answer's place among the choices is drawn too.

use super::Item;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The tasks, by the names `--task` takes.
pub const TASKS: [&str; 4] = ["arithmetic", "weekdays", "copying", "units"];

/// `n` items of `task` from `seed`; `None` for a task that does not exist.
pub fn items(task: &str, n: usize, seed: u64) -> Option<Vec<Item>> {
    let make: fn(&mut Draw) -> (String, String, Vec<String>) = match task {
        "arithmetic" => arithmetic,
        "weekdays" => weekdays,
        "copying" => copying,
        "units" => units,
        _ => return None,
    };
    // Each task its own stream: adding a task changes no other task's items.
    let salt = TASKS.iter().position(|t| *t == task).unwrap_or(0) as u64;
    let mut d = Draw(ChaCha8Rng::seed_from_u64(seed ^ (salt << 56)));
    Some(
        (0..n)
            .map(|_| {
                let (context, right, wrong) = make(&mut d);
                d.place(context, right, wrong)
            })
            .collect(),
    )
}

struct Draw(ChaCha8Rng);

impl Draw {
    /// A number in `lo..=hi`.
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.0.next_u64() % (hi - lo + 1) as u64) as i64
    }

    fn pick<'a, T>(&mut self, from: &'a [T]) -> &'a T {
        &from[self.int(0, from.len() as i64 - 1) as usize]
    }

    /// The item with the right answer at a drawn place among three wrong ones (distinct).
    fn place(&mut self, context: String, right: String, wrong: Vec<String>) -> Item {
        let mut choices: Vec<String> = Vec::with_capacity(4);
        for w in wrong {
            if w != right && !choices.contains(&w) && choices.len() < 3 {
                choices.push(w);
            }
        }
        let answer = self.int(0, choices.len() as i64) as usize;
        choices.insert(answer, right);
        Item {
            context,
            choices,
            answer,
        }
    }
}

fn arithmetic(d: &mut Draw) -> (String, String, Vec<String>) {
    let (a, b) = (d.int(2, 99), d.int(2, 99));
    let (word, sum) = if d.int(0, 1) == 0 {
        ("plus", a + b)
    } else {
        ("minus", a - b)
    };
    let wrong = [sum + 1, sum - 1, sum + 10, sum - 10, sum + 2];
    (
        format!("Question: What is {a} {word} {b}?\nAnswer:"),
        format!(" {sum}"),
        wrong.iter().map(|w| format!(" {w}")).collect(),
    )
}

const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn weekdays(d: &mut Draw) -> (String, String, Vec<String>) {
    let from = d.int(0, 6) as usize;
    let n = d.int(1, 6) as usize;
    let day = |k: usize| format!(" {}", DAYS[k % 7]);
    let after = if n == 1 { "day" } else { "days" };
    (
        format!(
            "Question: Which day of the week comes {n} {after} after {}?\nAnswer:",
            DAYS[from]
        ),
        day(from + n),
        vec![
            day(from + n + 1),
            day(from + n + 6),
            day(from),
            day(from + n + 2),
        ],
    )
}

const WORDS: [&str; 16] = [
    "apple", "river", "stone", "cloud", "green", "table", "music", "paper", "light", "horse",
    "window", "garden", "silver", "bread", "candle", "forest",
];

fn copying(d: &mut Draw) -> (String, String, Vec<String>) {
    let n = d.int(4, 6) as usize;
    let mut words: Vec<&str> = Vec::with_capacity(n);
    while words.len() < n {
        let w = *d.pick(&WORDS);
        if !words.contains(&w) {
            words.push(w);
        }
    }
    let join = |ws: &[&str]| format!(" {}", ws.join(" "));
    let mut swapped = words.clone();
    let i = d.int(0, n as i64 - 2) as usize;
    swapped.swap(i, i + 1);
    let dropped: Vec<&str> = words
        .iter()
        .enumerate()
        .filter(|&(k, _)| k != i)
        .map(|(_, w)| *w)
        .collect();
    let mut replaced = words.clone();
    let other = WORDS
        .iter()
        .find(|w| !words.contains(w))
        .expect("16 words, at most 6 used");
    replaced[n - 1 - i] = other;
    (
        format!("Repeat the words: {}\nRepeated:", words.join(" ")),
        join(&words),
        vec![join(&swapped), join(&dropped), join(&replaced)],
    )
}

/// From, to, how many of `to` make one `from`.
const UNITS: [(&str, &str, i64); 5] = [
    ("kilometers", "meters", 1000),
    ("meters", "centimeters", 100),
    ("kilograms", "grams", 1000),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
];

fn units(d: &mut Draw) -> (String, String, Vec<String>) {
    let &(from, to, per) = d.pick(&UNITS);
    let k = d.int(2, 9);
    let right = k * per;
    // Wrong answers of the right answer's length where they can be: a shorter number has
    // fewer tokens and so a higher sum, and the task would measure that instead.
    let wrong = [
        (k + 1) * per,
        (k - 1) * per,
        k * per + per / 2,
        (k + 2) * per,
    ];
    (
        format!("Question: How many {to} are in {k} {from}?\nAnswer:"),
        format!(" {right}"),
        wrong.iter().map(|w| format!(" {w}")).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_gives_four_distinct_choices_with_the_right_one_where_it_says() {
        for task in TASKS {
            let a = items(task, 300, 7).unwrap();
            assert_eq!(
                a,
                items(task, 300, 7).unwrap(),
                "{task}: a seed names its items"
            );
            assert_ne!(
                a,
                items(task, 300, 8).unwrap(),
                "{task}: another seed, other items"
            );
            let mut places = [0usize; 4];
            for item in &a {
                assert_eq!(item.choices.len(), 4, "{task}: {item:?}");
                let mut c = item.choices.clone();
                c.sort();
                c.dedup();
                assert_eq!(c.len(), 4, "{task}: {item:?}");
                places[item.answer] += 1;
            }
            assert!(places.iter().all(|&p| p > 40), "{task}: {places:?}");
        }
        let sum = &items("arithmetic", 1, 1).unwrap()[0];
        let q = sum.context.trim_start_matches("Question: What is ");
        let words: Vec<&str> = q.trim_end_matches("?\nAnswer:").split(' ').collect();
        let (a, b): (i64, i64) = (words[0].parse().unwrap(), words[2].parse().unwrap());
        let want = if words[1] == "plus" { a + b } else { a - b };
        assert_eq!(sum.choices[sum.answer], format!(" {want}"));
        assert!(items("trivia", 1, 1).is_none());
    }
}
