//! The simulated recipients: who a phone number is, and campaigns of numbers of mixed kinds.
//!
//! A recipient's kind is a function of the seed and the number alone (a hash picks it by the
//! kinds' weights), so every number has a kind, the same one in every run with the same seed, and
//! nothing needs to be registered. A number's region is read with `region_of` (a phone-number
//! library): every US number is [`RecipientKind::Us`], and a number in a region where the cap is
//! not active (the UK, the EEA, …) is never `Fatigued` or `Capped`. [`Population::campaign`] draws
//! numbers valid for their regions until each has the kind it was drawn for.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::domain::rules::region_of;

use crate::config::SandboxConfig;

/// What a simulated recipient is like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientKind {
    /// Reads most marketing and has a large budget: rarely capped.
    Engaged,
    /// Reads little and takes few marketing messages: capped often.
    Fatigued,
    /// Other businesses have already spent its budget when the run starts.
    Capped,
    /// A US number: no marketing template is delivered (131049).
    Us,
    /// Has stopped marketing from this business (131050) until it resumes.
    OptedOut,
    /// Not a WhatsApp user (131026).
    NotOnWhatsApp,
    /// Writes back some time after a delivery, opening a customer-service window.
    Replier,
}

impl RecipientKind {
    pub const ALL: [Self; 7] =
        [Self::Engaged, Self::Fatigued, Self::Capped, Self::Us, Self::OptedOut, Self::NotOnWhatsApp, Self::Replier];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Engaged => "engaged",
            Self::Fatigued => "fatigued",
            Self::Capped => "capped",
            Self::Us => "us",
            Self::OptedOut => "opted_out",
            Self::NotOnWhatsApp => "not_on_whatsapp",
            Self::Replier => "replier",
        }
    }

    /// Whether the kind only makes sense where the per-user cap is active.
    fn needs_the_cap(self) -> bool {
        matches!(self, Self::Fatigued | Self::Capped)
    }

    /// The regions campaign numbers of this kind are drawn in.
    fn regions(self) -> &'static [Region] {
        match self {
            Self::Us => &[Region::UnitedStates],
            Self::Fatigued | Self::Capped => &[Region::India, Region::India, Region::Brazil, Region::Canada],
            _ => &[Region::India, Region::India, Region::Brazil, Region::Canada, Region::UnitedKingdom],
        }
    }
}

impl fmt::Display for RecipientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A campaign's recipient: a number in international form (`+` and digits) and its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Recipient {
    pub number: String,
    pub kind: RecipientKind,
}

/// The regions campaign numbers come from, each with a mobile range valid in its numbering plan.
#[derive(Debug, Clone, Copy)]
enum Region {
    India,
    UnitedKingdom,
    Brazil,
    UnitedStates,
    Canada,
}

impl Region {
    /// The region's ISO code, as `region_of` reads it from the numbers below.
    fn code(self) -> &'static str {
        match self {
            Self::India => "IN",
            Self::UnitedKingdom => "GB",
            Self::Brazil => "BR",
            Self::UnitedStates => "US",
            Self::Canada => "CA",
        }
    }

    /// A mobile number: +91 98…, +44 7400…, +55 11 9…, +1 650…, +1 416….
    fn number(self, rng: &mut ChaCha8Rng) -> String {
        let digits = |rng: &mut ChaCha8Rng, n: usize| -> String {
            (0..n).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect()
        };
        let exchange = |rng: &mut ChaCha8Rng| char::from(b'2' + rng.random_range(0..8u8));
        match self {
            Self::India => format!("+9198{}", digits(rng, 8)),
            Self::UnitedKingdom => format!("+447400{}", digits(rng, 6)),
            Self::Brazil => format!("+55119{}", digits(rng, 8)),
            Self::UnitedStates => format!("+1650{}{}", exchange(rng), digits(rng, 6)),
            Self::Canada => format!("+1416{}{}", exchange(rng), digits(rng, 6)),
        }
    }
}

/// 32 bytes that depend on the seed, a purpose and a key only: the root of every random draw.
pub(crate) fn derived_seed(seed: u64, purpose: &str, key: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(seed.to_le_bytes());
    hash.update(purpose.as_bytes());
    hash.update([0]);
    hash.update(key.as_bytes());
    hash.finalize().into()
}

/// The digits of a number, without `+` or spacing: the `wa_id` form.
pub(crate) fn wa_id(number: &str) -> String {
    number.chars().filter(char::is_ascii_digit).collect()
}

/// A seeded population of recipients.
#[derive(Debug, Clone)]
pub struct Population {
    seed: u64,
    weights: BTreeMap<RecipientKind, u32>,
    uncapped_regions: BTreeSet<String>,
}

impl Population {
    pub fn new(config: &SandboxConfig) -> Self {
        let weights = config.kinds.iter().map(|(kind, profile)| (*kind, profile.weight)).collect();
        Self { seed: config.seed, weights, uncapped_regions: config.budget.uncapped_regions.clone() }
    }

    /// The kind of any number, generated by [`Population::campaign`] or not.
    pub fn kind_of(&self, number: &str) -> RecipientKind {
        let digits = wa_id(number);
        self.kind_in(region_of(&digits).as_deref(), &digits)
    }

    /// The kind of the number `digits` in `region`.
    pub(crate) fn kind_in(&self, region: Option<&str>, digits: &str) -> RecipientKind {
        if region == Some("US") {
            return RecipientKind::Us;
        }
        let uncapped = region.is_some_and(|region| self.uncapped_regions.contains(region));
        let candidates: Vec<(RecipientKind, u32)> = self
            .weights
            .iter()
            .filter(|(kind, weight)| **kind != RecipientKind::Us && **weight > 0 && !(uncapped && kind.needs_the_cap()))
            .map(|(kind, weight)| (*kind, *weight))
            .collect();
        let hash = derived_seed(self.seed, "kind", digits);
        let draw = u64::from_le_bytes(hash[..8].try_into().expect("8 bytes"));
        pick(&candidates, draw).unwrap_or(RecipientKind::Engaged)
    }

    /// `size` distinct recipients of mixed kinds, in proportion to the kinds' weights. The same
    /// seed gives the same list, and a shorter campaign is the start of a longer one.
    pub fn campaign(&self, size: usize) -> Vec<Recipient> {
        let mut rng = ChaCha8Rng::from_seed(derived_seed(self.seed, "campaign", ""));
        let weights: Vec<(RecipientKind, u32)> = self.weights.iter().map(|(k, w)| (*k, *w)).collect();
        let mut seen = HashSet::new();
        let mut recipients = Vec::with_capacity(size);
        while recipients.len() < size {
            let Some(kind) = pick(&weights, rng.random()) else { break };
            let regions = kind.regions();
            let region = regions[rng.random_range(0..regions.len())];
            // Numbers of a kind are rare only in proportion to its weight, so this ends quickly.
            let number = loop {
                let number = region.number(&mut rng);
                if self.kind_in(Some(region.code()), &wa_id(&number)) == kind && !seen.contains(&number) {
                    break number;
                }
            };
            seen.insert(number.clone());
            recipients.push(Recipient { number, kind });
        }
        recipients
    }

    /// A display name for the recipient, accented now and then as real names are.
    pub(crate) fn profile_name(&self, number: &str) -> &'static str {
        const NAMES: &[&str] =
            &["Priya Sharma", "José Álvarez", "Zoë Brontë", "Rahul Verma", "João Conceição", "Ana Lúcia", "Ravi Kumar"];
        let hash = derived_seed(self.seed, "name", &wa_id(number));
        NAMES[usize::from(hash[0]) % NAMES.len()]
    }
}

/// The kind `draw` lands on when the kinds are laid end to end by weight.
fn pick(weighted: &[(RecipientKind, u32)], draw: u64) -> Option<RecipientKind> {
    let total: u64 = weighted.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut point = draw % total;
    for (kind, weight) in weighted {
        let weight = u64::from(*weight);
        if point < weight {
            return Some(*kind);
        }
        point -= weight;
    }
    None
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use shared::clock::ScaledClock;

    use super::*;

    fn population(seed: u64) -> Population {
        let clock = ScaledClock::new(DateTime::from_timestamp(1_750_000_000, 0).unwrap(), 1.0);
        Population::new(&SandboxConfig::new(seed, clock))
    }

    #[test]
    fn a_seed_repeats_its_population_exactly() {
        let first = population(7).campaign(300);
        assert_eq!(first, population(7).campaign(300));
        assert_eq!(first[..100], population(7).campaign(100)[..]);
        assert_ne!(first, population(8).campaign(300));
        for recipient in &first {
            assert_eq!(population(7).kind_of(&recipient.number), recipient.kind, "{recipient:?}");
        }
    }

    #[test]
    fn a_campaign_mixes_every_kind_with_distinct_valid_numbers() {
        let campaign = population(1).campaign(400);
        let numbers: HashSet<_> = campaign.iter().map(|r| &r.number).collect();
        assert_eq!(numbers.len(), 400);
        for kind in RecipientKind::ALL {
            let count = campaign.iter().filter(|r| r.kind == kind).count();
            assert!(count >= 5, "{kind}: {count}");
        }
        for recipient in &campaign {
            let parsed = phonenumber::parse(None, &recipient.number).unwrap();
            assert!(phonenumber::is_valid(&parsed), "{} is not a valid number", recipient.number);
        }
    }

    #[test]
    fn regions_come_from_the_number_so_canada_is_not_the_us() {
        let population = population(3);
        assert_eq!(population.kind_of("+16505551234"), RecipientKind::Us);
        assert_eq!(population.kind_of("16505551234"), RecipientKind::Us);
        let canadians: Vec<_> = (0..50).map(|i| population.kind_of(&format!("+1416555{i:04}"))).collect();
        assert!(canadians.iter().all(|kind| *kind != RecipientKind::Us));
        let capped_kinds_in_uk = (0..200)
            .map(|i| population.kind_of(&format!("+447400{i:06}")))
            .filter(|kind| matches!(kind, RecipientKind::Capped | RecipientKind::Fatigued))
            .count();
        assert_eq!(capped_kinds_in_uk, 0, "the cap is not active in the UK");
        for recipient in population.campaign(100) {
            let region = region_of(&recipient.number).unwrap();
            assert_eq!(region == "US", recipient.kind == RecipientKind::Us, "{recipient:?}");
        }
    }
}
