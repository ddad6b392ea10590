import QBTools

QBTool.header.main()
