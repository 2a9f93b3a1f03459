pub mod handler;
pub mod mock_api;
