use super::*;

#[test]
fn times_round_trip_exactly() {
    for (seconds, nanos) in [(0, 0), (1_767_225_600, 0), (1_767_225_600, 1), (1_767_225_600, 123_456_789), (-5, 500)] {
        let at = DateTime::from_timestamp(seconds, nanos).unwrap();
        assert_eq!(parse_time_number(&time_number(at)), Some(at), "{at}");
    }
    assert_eq!(time_number(DateTime::from_timestamp(1_767_225_600, 500_000_000).unwrap()), "1767225600.5");
    assert_eq!(time_number(DateTime::from_timestamp(-1, 750_000_000).unwrap()), "-0.25");
    for edge in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
        assert_eq!(parse_time_number(&time_number(edge)), Some(edge));
    }
}

#[test]
fn time_numbers_sort_like_times_and_junk_is_refused() {
    let early = time_number(DateTime::from_timestamp(1_767_225_600, 5).unwrap());
    let late = time_number(DateTime::from_timestamp(1_767_225_601, 0).unwrap());
    assert!(early.parse::<f64>().unwrap() < late.parse::<f64>().unwrap());
    for junk in ["", "-", "1.2.3", "1e9", "1.0000000001", " 1", "x"] {
        assert_eq!(parse_time_number(junk), None, "{junk:?}");
    }
}

#[test]
fn slot_keys_round_trip() {
    let slot = Slot { attempt: 3, try_no: 12 };
    assert_eq!(slot_key(slot), "a3t12");
    assert_eq!(parse_slot_key("a3t12"), Some(slot));
    assert_eq!(parse_slot_key("3t12"), None);
    assert_eq!(parse_slot_key("a3"), None);
}

#[test]
fn a_send_item_without_its_life_is_corrupt() {
    let item: Item = HashMap::from([
        (PK.to_owned(), s("SEND#0123456789abcdef0123456789abcdef")),
        (TEMPLATE.to_owned(), s(r#"{"name":"spring_sale","language":"en_US"}"#)),
        (CATEGORY.to_owned(), s("marketing")),
        (ATTEMPTS.to_owned(), AttributeValue::M(HashMap::new())),
    ]);
    let Err(StoreError::Corrupt(problem)) = decode_send(&item) else {
        panic!("decoded an item with no life");
    };
    assert!(problem.contains("SEND#0123456789abcdef0123456789abcdef"), "{problem}");
    let not_a_send: Item = HashMap::from([(PK.to_owned(), s("RCPT#4474"))]);
    assert!(matches!(decode_send(&not_a_send), Err(StoreError::Corrupt(_))));
}

#[test]
fn ranks_round_trip_in_delivery_order() {
    let all = [Delivery::Accepted, Delivery::Sent, Delivery::Delivered, Delivery::Read];
    for pair in all.windows(2) {
        assert!(rank(pair[0]) < rank(pair[1]));
    }
    for delivery in all {
        assert_eq!(delivery_of_rank(rank(delivery)), Some(delivery));
    }
    assert_eq!(delivery_of_rank(0), None);
}
