//! Devices picked on the command line (`--only NAMES`, `--tags TAGS`): they replace the suite's
//! `devices:`, so one suite file runs unchanged against any inventory (a laptop's `local`, a
//! lab's farm, a CI runner's single board).

use crate::devices::{Device, Inventory};

/// What `--only` and `--tags` asked for. A device is picked when it is named or carries any of
/// the tags, as the suite's own `devices: [name, tag:t]` list combines them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    pub names: Vec<String>,
    pub tags: Vec<String>,
}

impl Selection {
    /// Nothing asked for: the suite's `devices:` decide.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.tags.is_empty()
    }

    /// The devices of `inv` picked, in inventory order; a name or tag that matches nothing is an
    /// error that lists what the inventory has.
    pub fn pick(&self, inv: &Inventory) -> Result<Vec<Device>, String> {
        let mut problems = Vec::new();
        for name in &self.names {
            if inv.get(name).is_none() {
                problems.push(format!(
                    "--only names '{name}', which is not in the inventory (its devices: {})",
                    inv.names().join(", ")
                ));
            }
        }
        for tag in &self.tags {
            if inv.tagged(tag).next().is_none() {
                problems.push(format!(
                    "--tags names '{tag}', which no device of the inventory carries (its tags: {})",
                    list_or_none(inv_tags(inv))
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(inv
            .devices
            .iter()
            .filter(|d| {
                self.names.contains(&d.name) || d.tags.iter().any(|t| self.tags.contains(t))
            })
            .cloned()
            .collect())
    }
}

fn inv_tags(inv: &Inventory) -> Vec<&str> {
    let mut tags: Vec<&str> = inv
        .devices
        .iter()
        .flat_map(|d| d.tags.iter().map(String::as_str))
        .collect();
    tags.sort_unstable();
    tags.dedup();
    tags
}

fn list_or_none(items: Vec<&str>) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::parse_inventory;
    use std::path::Path;

    fn farm() -> Inventory {
        parse_inventory(
            Path::new("farm.yaml"),
            "devices:\n\
             - {name: pi, transport: ssh, host: pi.local, tags: [board, arm64]}\n\
             - {name: phone, transport: adb, serial: X1, tags: [phone, arm64]}\n\
             - {name: laptop, transport: local}\n",
        )
        .unwrap()
    }

    fn names(devices: &[Device]) -> Vec<&str> {
        devices.iter().map(|d| d.name.as_str()).collect()
    }

    #[test]
    fn names_and_tags_combine_in_inventory_order() {
        let pick = Selection {
            names: vec!["laptop".into()],
            tags: vec!["phone".into()],
        };
        assert_eq!(names(&pick.pick(&farm()).unwrap()), ["phone", "laptop"]);
        let arm = Selection {
            names: vec!["pi".into()],
            tags: vec!["arm64".into()],
        };
        assert_eq!(names(&arm.pick(&farm()).unwrap()), ["pi", "phone"]);
    }

    #[test]
    fn unknown_names_and_tags_list_the_inventory() {
        let pick = Selection {
            names: vec!["rpi5".into()],
            tags: vec!["jetson".into()],
        };
        let e = pick.pick(&farm()).unwrap_err();
        assert!(
            e.contains("'rpi5', which is not in the inventory (its devices: pi, phone, laptop)"),
            "{e}"
        );
        assert!(
            e.contains("'jetson', which no device of the inventory carries (its tags: arm64, board, phone)"),
            "{e}"
        );
    }
}
