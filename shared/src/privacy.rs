//! What of a recipient may be shown: logs and reports never carry a phone number in clear.

/// A phone number with all but its country code's first digits and its last four hidden:
/// `919812345678` → `91******5678`.
pub fn mask_number(number: &str) -> String {
    let digits: Vec<char> = number.trim_start_matches('+').chars().collect();
    if digits.len() <= 6 {
        return "*".repeat(digits.len());
    }
    let (head, rest) = digits.split_at(2);
    let (hidden, tail) = rest.split_at(rest.len() - 4);
    format!("{}{}{}", head.iter().collect::<String>(), "*".repeat(hidden.len()), tail.iter().collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_head_and_the_last_four_digits_show() {
        assert_eq!(mask_number("919812345678"), "91******5678");
        assert_eq!(mask_number("+16505551234"), "16*****1234");
        assert_eq!(mask_number("12345"), "*****");
    }
}
