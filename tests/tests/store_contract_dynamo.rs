//! The state port's contract, on the DynamoDB adapter against DynamoDB Local (started by
//! scripts/test), one fresh table per check.

capguard_tests::store_contract_tests!(capguard_tests::dynamo::fresh_dynamo_store());
