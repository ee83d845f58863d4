pub mod protocols;
